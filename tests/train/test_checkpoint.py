"""Checkpoints: atomic, last K kept, truncated ones skipped, loadable by open_clip itself."""

from __future__ import annotations

import logging
import os
import stat

import open_clip
import pytest
import torch

from laclip.errors import DataError, LeaseHeld, StoreUnavailable, UsageError
from laclip.storage import open_store
from laclip.storage.local import LocalStore
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


class DownloadsFail(LocalStore):
    """A folder read the way a bucket is (download, then load) whose downloads fail, as in an outage."""

    def local_path(self, path):
        return None

    def download_file(self, path, local):
        raise StoreUnavailable(f"{self.url_of(path)}: the store did not answer after retrying")


def test_store_outage_at_resume_is_an_error_not_a_fresh_start(tmp_path, payload):
    store = open_store(str(tmp_path))
    ckpt.save(store, "r1", 5, {**payload, "step": 5}, keep_last=3)
    with pytest.raises(StoreUnavailable, match="step_5.pt: the store did not answer"):
        ckpt.load_latest(DownloadsFail(tmp_path), "r1")


def test_every_checkpoint_broken_is_an_error_not_a_fresh_start(tmp_path, payload):
    store = open_store(str(tmp_path))
    assert ckpt.load_latest(store, "r1") is None  # no checkpoint yet: a fresh start
    for step in (1, 2):
        path = store.local_path(ckpt.save(store, "r1", step, {**payload, "step": step}, keep_last=3))
        path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match=r"none of the 2 checkpoints in .*checkpoints/r1/ loads"):
        ckpt.load_latest(store, "r1")


def test_saving_a_step_again_is_refused_unless_the_run_skipped_it(tmp_path, payload, caplog):
    """A checkpoint at this step that loads is another process's (two trainers of one run): never
    silently overwritten. One this run skipped as unreadable at resume is replaced, with a warning."""
    store = open_store(str(tmp_path))
    logging.getLogger("laclip.train").addHandler(caplog.handler)  # laclip.logs.setup turns propagation off
    try:
        path = ckpt.save(store, "r1", 4, {**payload, "step": 4, "total_steps": 1}, keep_last=3)
        with pytest.raises(LeaseHeld, match="step_4.pt already exists and this run did not skip it as unreadable"):
            ckpt.save(store, "r1", 4, {**payload, "step": 4, "total_steps": 2}, keep_last=3)
        assert ckpt.load(store, path)["total_steps"] == 1  # left as it was
        assert not list(store.local_path("checkpoints/r1").glob(".*tmp"))  # the refused write left no temp file
        assert "replacing it" not in caplog.text
        # a restart that found step_4 cut short resumes from step 2 and writes step 4 again
        ckpt.save(store, "r1", 2, {**payload, "step": 2}, keep_last=3)
        local = store.local_path(path)
        local.write_bytes(local.read_bytes()[:1000])
        broken: list[str] = []
        where, state = ckpt.load_latest(store, "r1", broken)
        assert where.endswith("step_2.pt") and broken == [path]
        ckpt.save(store, "r1", 4, {**payload, "step": 4, "total_steps": 3}, keep_last=3, replaceable=broken)
    finally:
        logging.getLogger("laclip.train").removeHandler(caplog.handler)
    assert ckpt.load(store, path)["total_steps"] == 3
    assert "step_4.pt was unreadable at resume: replacing it" in caplog.text


def test_checkpoint_files_are_readable_by_others(tmp_path, payload):
    """Checkpoints get the mode any other new file gets (0644 under the usual umask 022), not
    mkstemp's 0600: an eval pod running as another user, a colleague, must be able to read them."""
    umask = os.umask(0)
    os.umask(umask)
    assert umask & 0o044 == 0, f"the tests run under umask {umask:03o}, which keeps new files from others"
    store = open_store(str(tmp_path))
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    path = store.local_path(ckpt.save(store, "r1", 1, {**payload, "step": 1}, keep_last=3))
    ckpt.write_run_config(store, "r1", payload["config"], RESUME_KEYS)
    for written in (path, store.local_path("checkpoints/r1/config.json")):
        mode = stat.S_IMODE(written.stat().st_mode)
        assert mode & 0o044 == 0o044, oct(mode)
        assert mode == stat.S_IMODE(plain.stat().st_mode), (oct(mode), oct(plain.stat().st_mode))


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

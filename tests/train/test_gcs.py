"""Training against gs:// (the real fake-gcs-server): shards streamed through the store,
checkpoints written locally then uploaded create-only, resume reads them back."""

from __future__ import annotations

import open_clip
import pytest

from laclip.data.registry import resolve_shards
from laclip.storage import open_store
import laclip.train.model  # noqa: F401  (registers laclip-tiny with open_clip)
from laclip.train import checkpoint as ckpt
from laclip.train.config import TrainConfig
from laclip.train.main import main
from .train_helpers import write_rewrites


@pytest.mark.slow
def test_train_on_gcs_and_resume(demo_store, gcs_bucket, tmp_path, capsys):
    store = open_store(gcs_bucket)
    for shard in resolve_shards(demo_store, "demo")[:2]:
        for path in (shard.tar, shard.parquet):
            store.write_bytes(path, demo_store.read_bytes(path))
    write_rewrites(store)
    cfg = TrainConfig(run="g1", root=gcs_bucket, model="laclip-tiny", rewrites="rw1", batch_size=16, steps=4,
                      checkpoint_every=2, keep_last=1, workers=1, shuffle_buffer=16, warmup_steps=1)
    assert main(["--config", cfg.model_dump_json()]) == 0
    assert [s for s, _ in ckpt.list_steps(store, "g1")] == [4]
    assert store.exists("checkpoints/g1/config.json")
    assert any("tensorboard/events.out.tfevents" in p for p in store.list("checkpoints/g1/"))
    local = tmp_path / "step_4.pt"
    store.download_file("checkpoints/g1/step_4.pt", local)
    open_clip.create_model_and_transforms("laclip-tiny", pretrained=str(local))
    assert main(["--config", cfg.model_copy(update={"steps": 6}).model_dump_json()]) == 0
    assert "step_4.pt at step 4 of 6" in capsys.readouterr().err


def test_checkpoint_saved_again_on_gcs_only_replaces_one_skipped_at_resume(gcs_bucket):
    """A restart that resumed past an unreadable step_N.pt writes step N again: the create-only
    upload finds the old object, which must not keep the new state from being saved. An object
    that loads is another trainer's: the create-only upload keeps it, and the save is refused."""
    import pytest

    from laclip.errors import LeaseHeld

    store = open_store(gcs_bucket)
    ckpt.save(store, "g2", 2, {"step": 2, "total_steps": 9}, keep_last=3)
    store.write_bytes("checkpoints/g2/step_3.pt", b"cut short")
    broken: list[str] = []
    path, state = ckpt.load_latest(store, "g2", broken)
    assert path == "checkpoints/g2/step_2.pt" and broken == ["checkpoints/g2/step_3.pt"]
    ckpt.save(store, "g2", 3, {"step": 3, "total_steps": 9}, keep_last=3, replaceable=broken)
    path, state = ckpt.load_latest(store, "g2")
    assert path == "checkpoints/g2/step_3.pt" and state["total_steps"] == 9
    with pytest.raises(LeaseHeld, match="step_3.pt already exists"):
        ckpt.save(store, "g2", 3, {"step": 3, "total_steps": 10}, keep_last=3)
    assert ckpt.load(store, "checkpoints/g2/step_3.pt")["total_steps"] == 9

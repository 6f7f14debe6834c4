"""The eval stage on a gs:// store (the real GCS client against fake-gcs-server)."""

from __future__ import annotations

import json

import pytest

from laclip import layout
from laclip.eval.config import EvalConfig
from laclip.eval.worker import run_eval
from laclip.storage import open_store

from .conftest import TINY, save_checkpoint


@pytest.mark.slow
def test_eval_reads_and_writes_a_bucket(ckpt_store, gcs_bucket):
    bucket = open_store(gcs_bucket + "/team")
    for path in ckpt_store.list("datasets/demo-eval/") + ckpt_store.list("checkpoints/"):
        bucket.write_bytes(path, ckpt_store.read_bytes(path))
    save_checkpoint(bucket, "gcs-run", 3, TINY)
    cfg = EvalConfig.for_checkpoint(f"{gcs_bucket}/team/checkpoints/gcs-run/step_3", tasks="zeroshot,retrieval",
                                    workers=2)  # loader workers each open their own client
    assert cfg.root == f"{gcs_bucket}/team"
    records = run_eval(cfg)
    assert sorted(r["task"] for r in records) == ["zeroshot_classification", "zeroshot_retrieval"]
    found = {task: path for ckpt, ds, task, rid, path in layout.eval_results(bucket, "gcs-run")}
    assert set(found) == {"zeroshot_classification", "zeroshot_retrieval"}
    zs = found["zeroshot_classification"]
    assert zs.startswith("evals/gcs-run/step_3/demo-eval/zeroshot_classification-") and zs.endswith(".json")
    stored = json.loads(bucket.read_text(zs))
    assert stored["pretrained"] == f"{gcs_bucket}/team/checkpoints/gcs-run/step_3.pt"
    assert stored["metrics"] == records[[r["task"] for r in records].index("zeroshot_classification")]["metrics"]
    assert zs.endswith(f"-{stored['laclip']['result_id']}.json")
    assert bucket.exists("evals/gcs-run/step_3/features/demo-eval/test.npz")
    # done: the results exist in the bucket, and a second run returns them as they are
    before = sorted(bucket.list("evals/gcs-run/"))
    assert run_eval(cfg) == records
    assert sorted(bucket.list("evals/gcs-run/")) == before

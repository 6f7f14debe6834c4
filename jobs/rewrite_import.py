"""Render the rewrite-import stage as one Kubernetes Job (pure: config in, dicts out).

One CPU pod streams the release files from the bucket, joins them onto the dataset's shards and
writes the rewrite set (laclip.rewrite_import). Its inputs must be gs:// URLs (the pod cannot
read files on the submitter's machine; the CLI refuses others before it submits). The spill
files go to the pod's /tmp (an emptyDir, with an ephemeral-storage request sized for them).
The image is the eval image: the import needs only laclip itself (pyarrow and numpy), and that
image is already pulled where evaluations run.
A preemption is not counted; EXIT_PERMANENT (files not line-aligned, a changed shard) fails the
Job at once.
"""

from __future__ import annotations

from typing import Any

from laclip import layout
from laclip.errors import UsageError
from laclip.rewrite_import.config import ImportConfig
from laclip_jobs.backends import job
from laclip_jobs.common import check_name, resources

COMPONENT = "rewrite-import"
CONTAINER = "import"
IMAGE = "eval"
ENTRY_MODULE = "laclip.rewrite_import.main"
SCRATCH = "64Gi"  # ephemeral storage for the spill files: CC12M's candidates take about 6 GiB (lz4)


def render(cfg: ImportConfig) -> list[dict[str, Any]]:
    run, root = cfg.run, cfg.root
    if not (run and root):
        raise UsageError("the import Job needs the run id and the store root (submit sets them)")
    check_name(run, "run id")
    cluster = cfg.cluster
    rewrite_id = cfg.resolved_rewrite_id()
    worker = cfg.model_copy(update={"rewrite_id": rewrite_id, "work_dir": "/tmp"})
    res = resources(cluster)
    res["requests"]["ephemeral-storage"] = SCRATCH
    return [job.render(
        component=COMPONENT, name=run, run=run, root=root, dataset=cfg.dataset, cluster=cluster, entry=ENTRY_MODULE,
        config=worker.worker_json(), container=CONTAINER, image=IMAGE, items=1, retries=cfg.backoff_limit, res=res,
        annotations={"laclip.dev/rewrite-id": rewrite_id,
                     "laclip.dev/output": f"{root.rstrip('/')}/{layout.rewrite_folder(cfg.dataset, rewrite_id)}/"})]

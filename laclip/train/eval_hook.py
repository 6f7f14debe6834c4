"""Ask for an eval Job on each checkpoint a cluster run writes (TrainConfig.eval_datasets).

At submit time the CLI renders the run's eval Job into TrainConfig.eval_job; rank 0 creates its
copy for each checkpoint right after the checkpoint lands in the bucket (laclip.followup),
through the cluster-client module with the pod's own credentials. The pod's ServiceAccount
needs `create` on Jobs (manifests/components/train-submits-eval). Evaluation is a side job: a
refused or failed request is logged and training goes on; asking twice is harmless.
"""

from __future__ import annotations

import logging

from laclip.train.config import TrainConfig

log = logging.getLogger("laclip.train")


def request_eval(cfg: TrainConfig, checkpoint_url: str) -> str | None:
    """The eval Job's name, or None when none was asked for or the request failed."""
    if not cfg.eval_datasets:
        return None
    if not checkpoint_url.startswith("gs://") or not cfg.eval_job:
        log.warning("eval datasets given but %s is not in a bucket, so no pod could read it: "
                    "run `laclip submit eval --local --checkpoint %s` instead", checkpoint_url, checkpoint_url)
        return None
    try:
        from laclip import cluster
        from laclip.followup import for_checkpoint

        job = for_checkpoint(cfg.eval_job, checkpoint_url)
        [(_, name, _)] = cluster.create([job])
    except Exception as exc:  # noqa: BLE001  (an API error, no RBAC, no network: never stop training)
        log.warning("could not request an eval Job for %s: %s", checkpoint_url, exc)
        return None
    log.info("requested eval Job %s for %s", name, checkpoint_url)
    return name

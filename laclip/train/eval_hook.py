"""Ask for an eval Job on each checkpoint a cluster run writes (TrainConfig.eval_datasets).

Rank 0 calls `request_eval` right after a checkpoint lands in the bucket. The pod's
ServiceAccount needs `create` on Jobs (manifests/components/train-submits-eval). Evaluation
is a side job: a refused or failed request is logged and training goes on.
"""

from __future__ import annotations

import logging
import os

from laclip.train.config import TrainConfig


def request_eval(cfg: TrainConfig, checkpoint_url: str, log: logging.Logger) -> str | None:
    """The eval Job's name, or None when none was asked for or the request failed."""
    if not cfg.eval_datasets:
        return None
    if not checkpoint_url.startswith("gs://"):
        log.warning("eval datasets given but %s is not in a bucket, so no pod could read it: "
                    "run `laclip submit eval --local --checkpoint %s` instead", checkpoint_url, checkpoint_url)
        return None
    try:
        from laclip.config import ClusterOptions
        from laclip_jobs.eval import submit_eval_for_checkpoint

        c = cfg.cluster  # the eval pods go where the training pods went, with the eval image
        cluster = ClusterOptions(namespace=c.namespace, service_account=c.service_account,
                                 accelerator=c.accelerator, spot=c.spot, queue=c.queue,
                                 priority_class=c.priority_class, image=os.environ.get("LACLIP_EVAL_IMAGE"))
        name = submit_eval_for_checkpoint(checkpoint_url, cfg.root, datasets=cfg.eval_datasets, cluster=cluster)
    except Exception as exc:  # noqa: BLE001  (an API error, no RBAC, no network: never stop training)
        log.warning("could not request an eval Job for %s: %s", checkpoint_url, exc)
        return None
    log.info("requested eval Job %s for %s", name, checkpoint_url)
    return name

"""Jobs that follow a training run: the eval Job the CLI renders at submit time for a run's first
checkpoint (laclip_jobs.eval) and the copy rank 0 makes of it for each later checkpoint
(laclip.train.eval_hook), both pointed at their checkpoint here, so a copy is exactly what the
renderer makes for that checkpoint.

Below both training and evaluation, so neither imports the other. A follow-up Job's container reads
its config as `--config JSON` whose first field is `checkpoint` and which names its `run`; its name
is `<component>-<run>-<checkpoint>` (job_name) and it carries the checkpoint as a label and an
annotation. Pointing it at another checkpoint changes that field's value and nothing else in the
config's text. No torch here.
"""

from __future__ import annotations

import copy
import hashlib
import json
import posixpath
import re

from laclip.kube import kubelet_literal, stamp

CHECKPOINT_LABEL = "laclip.dev/checkpoint"
CHECKPOINT_ANNOTATION = "laclip.dev/checkpoint-url"
COMPONENT_LABEL = "app.kubernetes.io/component"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def checkpoint_name(url: str) -> str:
    return posixpath.basename(url).removesuffix(".pt")


def job_name(component: str, run: str, checkpoint: str, indexes: int = 1) -> str:
    """`<component>-<run>-<checkpoint>`, shortened with a hash when too long: at most 63 characters,
    less the `-<index>` that the API server requires room for in an Indexed Job's pod hostnames."""
    limit = 63 - (len(f"-{indexes - 1}") if indexes > 1 else 0)
    name = f"{component}-{slug(run)}-{slug(checkpoint)}".strip("-")
    if len(name) > limit:
        digest = hashlib.sha256(f"{run}/{checkpoint}".encode()).hexdigest()[:6]
        name = name[:limit - 7].rstrip("-") + "-" + digest
    return name


def _args(job: dict) -> list[str]:
    return job["spec"]["template"]["spec"]["containers"][0]["args"]


def config_text(job: dict) -> str:
    """The JSON config in a follow-up Job's container args (`--config JSON`), as the process reads it."""
    args = _args(job)
    return args[args.index("--config") + 1].replace("$$", "$")


def point_at(job: dict, config: str, checkpoint_url: str) -> dict:
    """Give `job` the config text `config` (for `checkpoint_url`), and the name, label and annotation of
    that checkpoint, in place; the pods need no cluster options, so `config` holds none."""
    name = checkpoint_name(checkpoint_url)
    job["metadata"]["name"] = job_name(job["metadata"]["labels"][COMPONENT_LABEL], json.loads(config)["run"], name,
                                       job["spec"].get("completions", 1))
    for meta in (job["metadata"], job["spec"]["template"]["metadata"]):
        meta.setdefault("labels", {})[CHECKPOINT_LABEL] = slug(name)[:63].strip("-")
    job["metadata"].setdefault("annotations", {})[CHECKPOINT_ANNOTATION] = checkpoint_url
    args = _args(job)
    args[args.index("--config") + 1] = kubelet_literal(config)  # a `$` in user text reaches the process as is
    return stamp(job)


def for_checkpoint(template: dict, checkpoint_url: str) -> dict:
    """A copy of `template` (a follow-up Job) for `checkpoint_url`, a checkpoint of the same run."""
    text = config_text(template)
    field = '"checkpoint":' + json.dumps(json.loads(text)["checkpoint"], ensure_ascii=False)
    if not text.startswith("{" + field):
        raise ValueError("the template's config does not start with its checkpoint")
    text = text.replace(field, '"checkpoint":' + json.dumps(checkpoint_url, ensure_ascii=False), 1)
    return point_at(copy.deepcopy(template), text, checkpoint_url)

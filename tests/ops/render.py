"""Render every stage that `laclip submit` offers (`--dry-run`), as a user would."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

ROOT = "gs://laclip-bucket/prod"
STAGE_ARGS = {
    "rewrite": ["--dataset", "cc12m"],
    "train": ["--dataset", "cc12m", "--rewrites", "X", "--model", "ViT-B-16", "--nodes", "8"],  # a JobSet
    "eval": ["--checkpoint", "gs://bucket/checkpoints/run/step_1000"],
}


def registered_stages() -> set[str]:
    """The stages `laclip submit` offers: laclip_cli.submit.STAGES, each a command of its typer app."""
    from laclip_cli.submit import STAGES, app as submit_app

    commands = {c.name or c.callback.__name__ for c in submit_app.registered_commands}
    return {name for name in STAGES if name in commands}


def dry_run(stage: str, *extra: str):
    """(exit code, objects or None, output, exception) of `laclip submit STAGE ... --dry-run`."""
    from laclip_cli.main import app

    args = ["--root", ROOT, "submit", stage, *STAGE_ARGS.get(stage, []), *extra, "--dry-run"]
    result = CliRunner().invoke(app, args)
    objs = None
    if result.exit_code == 0:
        text = result.stdout
        objs = [d for d in yaml.safe_load_all(text[text.index("apiVersion"):]) if d]
    return result.exit_code, objs, result.output, result.exception


def volcano_tasks_as_jobs(vjob: dict) -> list[dict]:
    """Each task of a Volcano Job as the batch/v1 Job that runs the same pods. checkov reads any
    `kind: Job` as batch/v1 and finds no spec.template in a Volcano Job; as Jobs, the task pod
    templates get the checks of batch work (no liveness or readiness probes, as for rewrite and eval)."""
    meta = vjob["metadata"]
    return [{"apiVersion": "batch/v1", "kind": "Job",
             "metadata": {"name": f"{meta['name']}-{task['name']}", "namespace": meta.get("namespace"),
                          "labels": meta.get("labels", {})},
             "spec": {"template": task["template"]}}
            for task in vjob["spec"]["tasks"]]


def as_batch_jobs(obj: dict) -> list[dict]:
    """A JobSet or a Volcano Job as the batch/v1 Jobs that run its pods (what checkov and the
    Kubernetes schema can read); any other object as it is."""
    from laclip_jobs.backends import jobset

    if obj["apiVersion"].startswith("batch.volcano.sh"):
        return volcano_tasks_as_jobs(obj)
    if obj["kind"] == jobset.KIND:
        return jobset.job_templates(obj)
    return [obj]


def pod_specs(obj: dict) -> list[dict]:
    if obj["kind"] == "Job" and obj["apiVersion"].startswith("batch.volcano.sh"):
        return [t["template"]["spec"] for t in obj["spec"]["tasks"]]
    if obj["kind"] == "JobSet":
        return [r["template"]["spec"]["template"]["spec"] for r in obj["spec"]["replicatedJobs"]]
    if obj["kind"] == "Job":
        return [obj["spec"]["template"]["spec"]]
    if obj["kind"] == "Pod":
        return [obj["spec"]]
    return []

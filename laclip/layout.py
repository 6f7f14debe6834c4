"""The store layout: every path under the root, in one place. Stages hand data to each other only
through these paths, so nothing else in laclip, laclip_jobs or laclip_cli spells them.

    datasets/<name>/NNNNN.tar + NNNNN.parquet           img2dataset shards (or a CLIP_benchmark set)
    datasets/<name>/laclip-source.json                  where `laclip datasets get-eval` copied it from
    rewrites/<dataset>/<rewrite-id>/config.json         the rewrite run record
    rewrites/<dataset>/<rewrite-id>/NNNNN.parquet       rewrites of shard NNNNN (+ NNNNN.stats.json)
    rewrites/<dataset>/<rewrite-id>/summary.json        an imported set's totals (laclip.rewrite_import)
    checkpoints/<run>/config.json                       the training run record
    checkpoints/<run>/step_N.pt                         checkpoints (+ tensorboard/)
    evals/<run>/<checkpoint>/config.json                the evaluation record of one checkpoint
    evals/<run>/<checkpoint>/<dataset>/<task>-<id>.json one result; <id> names what made it
    evals/<run>/<checkpoint>/<dataset>/<task>-<id>.outcomes.npz  its per-sample outcomes (laclip.eval.outcomes)
    evals/<run>/<checkpoint>/features/<dataset>/<split>.npz  cached image features
    leases/<run>/<seq>.json, <seq>.alive                who owns a training run (laclip.lease)

Paths are relative to the store root and use "/" (laclip.storage.base.join).
"""

from __future__ import annotations

import re

from laclip.storage.base import Store, join

DATASETS, REWRITES, CHECKPOINTS, EVALS, LEASES = "datasets", "rewrites", "checkpoints", "evals", "leases"
RECORD = "config.json"  # the run record of every output folder
STEP_RE = re.compile(r"^step_(\d+)\.pt$")


# -- datasets ---------------------------------------------------------------------------------
def dataset_folder(name: str) -> str:
    return join(DATASETS, name)


SOURCE_RECORD = "laclip-source.json"


def dataset_source(name: str) -> str:
    """The record of a fetched evaluation set: hub repository, pinned revision, file sizes and hashes."""
    return join(DATASETS, name, SOURCE_RECORD)


def dataset_name(path: str) -> str | None:
    """The dataset a store path lies in (`datasets/<name>/...`), else None."""
    parts = path.split("/")
    return parts[1] if len(parts) >= 3 and parts[0] == DATASETS else None


# -- rewrites ---------------------------------------------------------------------------------
def rewrites_of(dataset: str) -> str:
    return join(REWRITES, dataset)


def rewrite_folder(dataset: str, rewrite_id: str) -> str:
    return join(REWRITES, dataset, rewrite_id)


def root_of_rewrite_url(url: str) -> str | None:
    """The store root of `ROOT/rewrites/DATASET/ID[/]` (a rewrite Job's output annotation), else None."""
    parts = url.rstrip("/").rsplit("/", 3)
    return parts[0] if len(parts) == 4 and parts[1] == REWRITES and parts[0] else None


def rewrite_record(dataset: str, rewrite_id: str) -> str:
    return join(rewrite_folder(dataset, rewrite_id), RECORD)


def rewrite_shard(dataset: str, rewrite_id: str, shard_id: str) -> str:
    return join(rewrite_folder(dataset, rewrite_id), f"{shard_id}.parquet")


def rewrite_stats(dataset: str, rewrite_id: str, shard_id: str) -> str:
    return join(rewrite_folder(dataset, rewrite_id), f"{shard_id}.stats.json")


def rewrite_summary(dataset: str, rewrite_id: str) -> str:
    """The totals of an imported rewrite set (laclip.rewrite_import): matched, missing, ambiguous..."""
    return join(rewrite_folder(dataset, rewrite_id), "summary.json")


def rewrite_ids(store: Store, dataset: str) -> list[str]:
    """The rewrite sets of a dataset (folders under rewrites/<dataset>/)."""
    prefix = rewrites_of(dataset) + "/"
    return sorted({p[len(prefix):].split("/", 1)[0] for p in store.list(prefix) if "/" in p[len(prefix):]})


def rewritten_shards(store: Store, dataset: str, rewrite_id: str) -> list[str]:
    """Shard ids whose rewrite parquet exists."""
    folder = rewrite_folder(dataset, rewrite_id) + "/"
    return [p[len(folder):-len(".parquet")] for p in store.list(folder)
            if p.endswith(".parquet") and "/" not in p[len(folder):]]


# -- checkpoints ------------------------------------------------------------------------------
def run_folder(run: str) -> str:
    return join(CHECKPOINTS, run)


def run_record(run: str) -> str:
    return join(CHECKPOINTS, run, RECORD)


def checkpoint(run: str, step: int) -> str:
    return join(CHECKPOINTS, run, f"step_{step}.pt")


def tensorboard(run: str, name: str = "") -> str:
    return join(CHECKPOINTS, run, "tensorboard", name)


def checkpoint_steps(store: Store, run: str) -> list[tuple[int, str]]:
    """(step, path) of every checkpoint of the run, oldest first."""
    out = []
    for path in store.list(run_folder(run) + "/"):
        m = STEP_RE.fullmatch(path.rsplit("/", 1)[-1])
        if m and path.count("/") == 2:
            out.append((int(m.group(1)), path))
    return sorted(out)


def split_checkpoint_url(ref: str) -> tuple[str, str] | None:
    """(store root, path in it) of `ROOT/checkpoints/RUN/FILE`, else None."""
    marker = f"/{CHECKPOINTS}/"
    if marker not in ref:
        return None
    root, _, tail = ref.rpartition(marker)
    return root, join(CHECKPOINTS, tail)


def in_run_folder(ref: str) -> str:
    """A checkpoint named relative to the root (`RUN/step_N` or `checkpoints/RUN/step_N`)."""
    ref = ref.strip("/")
    return ref if ref.startswith(CHECKPOINTS + "/") else join(CHECKPOINTS, ref)


# -- evaluations ------------------------------------------------------------------------------
def evals_of(run: str) -> str:
    return join(EVALS, run)


def eval_folder(run: str, checkpoint_name: str) -> str:
    return join(EVALS, run, checkpoint_name)


def eval_record(run: str, checkpoint_name: str) -> str:
    return join(eval_folder(run, checkpoint_name), RECORD)


def eval_result(run: str, checkpoint_name: str, dataset: str, task: str, result_id: str) -> str:
    return join(eval_folder(run, checkpoint_name), dataset, f"{task}-{result_id}.json")


def eval_outcomes(run: str, checkpoint_name: str, dataset: str, task: str, result_id: str) -> str:
    """The per-sample outcomes beside a result (same identity): what paired comparisons read."""
    return join(eval_folder(run, checkpoint_name), dataset, f"{task}-{result_id}.outcomes.npz")


def eval_features(run: str, checkpoint_name: str, dataset: str, split: str) -> str:
    return join(eval_folder(run, checkpoint_name), "features", dataset, f"{split}.npz")


RESULT_RE = re.compile(r"^(?P<task>[a-z_]+)(-(?P<id>[0-9a-f]{6,64}))?\.json$")


def eval_results(store: Store, run: str) -> list[tuple[str, str, str, str | None, str]]:
    """(checkpoint, dataset, task, result id, path) of every result file of a run."""
    found = []
    for path in store.list(evals_of(run) + "/"):
        parts = path.split("/")
        m = RESULT_RE.fullmatch(parts[-1])
        if len(parts) == 5 and m and parts[3] != "features":
            found.append((parts[2], parts[3], m.group("task"), m.group("id"), path))
    return found


def pipeline_folder(tag: str) -> str:
    return join(EVALS, f"pipeline-{tag}")


def model_folder(name: str) -> str:
    """Where `gcloud storage cp -r` puts LLM weights for the rewrite pods (the default --model)."""
    return join("models", name)


# -- leases -----------------------------------------------------------------------------------
def lease_folder(run: str) -> str:
    return join(LEASES, run)

"""Progress of a run read from the object store: the outputs are the truth.

A shard is rewritten when `rewrites/<dataset>/<rewrite-id>/NNNNN.parquet` exists, training has
reached step N when `checkpoints/<run>/step_N.pt` exists, and evaluation results are the
JSON files under `evals/<run>/`. Listing is cheap (one prefix per stage), so `laclip status`
reads these every time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from laclip import layout
from laclip.storage.base import Store

SHARD_OUTPUT = re.compile(r"^\d{5,}$")


@dataclass
class StoreProgress:
    shards_done: int | None = None  # rewrite outputs present
    shards_total: int | None = None  # shards of the input dataset
    last_step: int | None = None  # newest checkpoint
    checkpoints: int = 0  # kept in the store (training deletes all but the last few)
    total_steps: int | None = None  # from checkpoints/<run>/config.json when the run fixed it
    eval_results: list[str] = field(default_factory=list)  # paths relative to evals/<run>/


def rewritten_shards(store: Store, dataset: str, run: str) -> int:
    return sum(1 for sid in layout.rewritten_shards(store, dataset, run) if SHARD_OUTPUT.fullmatch(sid))


def dataset_shards(store: Store, dataset: str) -> int | None:
    """Shards in the store, else the preset's nominal count, else unknown."""
    from laclip.data.registry import PRESETS, dataset_folder
    from laclip.data.shards import list_shards

    try:
        found = len(list_shards(store, dataset, dataset_folder(dataset)))
    except Exception:  # a half-synced dataset still deserves a status line
        found = 0
    if found:
        return found
    return PRESETS[dataset].shards if dataset in PRESETS else None


def checkpoint_steps(store: Store, run: str) -> list[int]:
    return [step for step, _ in layout.checkpoint_steps(store, run)]


def planned_steps(store: Store, run: str) -> int | None:
    """Total steps recorded in the run's config.json (`total_steps`, else `steps`), if any."""
    import json

    from laclip.errors import LaclipError

    path = layout.run_record(run)
    try:
        if not store.exists(path):
            return None
        cfg = json.loads(store.read_text(path))
    except (LaclipError, ValueError):
        return None
    total = cfg.get("total_steps") or cfg.get("steps") if isinstance(cfg, dict) else None
    return int(total) if isinstance(total, (int, float)) and total > 0 else None


def eval_results(store: Store, run: str) -> list[str]:
    """Result files, `<checkpoint>/<dataset>/<task>-<id>.json` (not the per-checkpoint config.json)."""
    prefix = layout.evals_of(run) + "/"
    return sorted(path[len(prefix):] for *_, path in layout.eval_results(store, run))


def store_progress(store: Store, stage: str, run: str, dataset: str | None,
                   rewrite_id: str | None = None, shards: int | None = None) -> StoreProgress:
    """What the store says about one stage of `run`. A rewrite writes under its rewrite id
    (the Job's `laclip.dev/rewrite-id` annotation), which defaults to the run id, and covers
    `shards` shards (its `laclip.dev/shards` annotation), else every shard of the dataset."""
    out = StoreProgress()
    if stage == "rewrite" and dataset:
        out.shards_done = rewritten_shards(store, dataset, rewrite_id or run)
        out.shards_total = shards or dataset_shards(store, dataset)
    elif stage == "train":
        steps = checkpoint_steps(store, run)
        out.checkpoints = len(steps)
        out.last_step = steps[-1] if steps else None
        out.total_steps = planned_steps(store, run)
    if stage in ("train", "eval"):
        out.eval_results = eval_results(store, run)
    return out

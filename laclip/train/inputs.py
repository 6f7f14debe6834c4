"""What a training run reads, checked before anything is launched: the CLI runs these checks before
a submit or a local run, the pod's launcher before torchrun, the trainer before step 0.
No torch here.

A rewrite set pairs with a dataset by key, and img2dataset's keys are row positions in the URL
list: a dataset downloaded again from a changed list gives the old keys to other images. Each
rewrite row therefore carries the caption it was made from, and a set whose captions disagree
with the shards' on more than `max_rewrite_mismatch` of the rows checked is refused; below that,
the loader trains the disagreeing samples on their original caption and counts them.
"""

from __future__ import annotations

from laclip.data.registry import resolve_shards
from laclip.data.shards import Shard, read_captions
from laclip.errors import DataError, NotFound
from laclip.storage import open_store
from laclip.storage.base import Store
from laclip.train.config import TrainConfig

PROBE_SHARDS = 8  # shards whose captions are compared before a start


def uses_rewrites(cfg: TrainConfig) -> bool:
    return bool(cfg.rewrites) and cfg.augment == "laclip"


def check_inputs(cfg: TrainConfig, store: Store | None = None) -> list[Shard]:
    """The dataset's shards, once the dataset, the rewrite set and the model name check out."""
    from laclip.train.model_names import check_model_name

    check_model_name(cfg.model)
    store = store or open_store(cfg.root)
    shards = resolve_shards(store, cfg.dataset)
    if uses_rewrites(cfg):
        from laclip.rewrite.output import read_record

        read_record(store, cfg.dataset, cfg.rewrites)
        check_captions(store, cfg, shards)
    return shards


def _probe(shards: list[Shard], n: int) -> list[Shard]:
    return shards if len(shards) <= n else shards[:: max(1, len(shards) // n)][:n]


def check_captions(store: Store, cfg: TrainConfig, shards: list[Shard]) -> dict:
    """Compare the rewrite set's original captions with the dataset's on a few shards; refuse a
    set made from other captions. Returns the counts."""
    from laclip import layout
    from laclip.rewrite.output import read_originals

    done = set(layout.rewritten_shards(store, cfg.dataset, cfg.rewrites))
    checked = differ = 0
    worst = None
    for shard in _probe([s for s in shards if s.id in done], PROBE_SHARDS):
        now = dict(read_captions(store, shard))
        try:
            made_from = read_originals(store, cfg.dataset, cfg.rewrites, shard.id)
        except NotFound:
            continue
        bad = sum(1 for k, c in made_from if k in now and now[k].strip() != (c or "").strip())
        common = sum(1 for k, _ in made_from if k in now)
        checked, differ = checked + common, differ + bad
        if bad and (worst is None or bad > worst[1]):
            worst = (shard, bad, common)
    if checked and differ / checked > cfg.max_rewrite_mismatch:
        shard, bad, common = worst
        raise DataError(
            f"rewrites {cfg.rewrites!r} were made from other captions than dataset {cfg.dataset!r} holds now: "
            f"{differ:,} of {checked:,} rows checked differ ({100 * differ / checked:.1f}%, more than "
            f"--max-rewrite-mismatch {100 * cfg.max_rewrite_mismatch:g}%; shard {shard.id}: {bad} of {common}). "
            "The dataset was downloaded again since? Rewrite it afresh (a new rewrite id) and train on that")
    return {"checked": checked, "differ": differ}


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

import logging
from collections import Counter
from dataclasses import dataclass, field

from laclip.data.registry import resolve_shards
from laclip.data.shards import Shard, read_captions, read_rows, repeated_keys
from laclip.errors import DataError, NotFound, UsageError
from laclip.storage import open_store
from laclip.storage.base import Store
from laclip.train.config import TrainConfig

PROBE_SHARDS = 8  # shards whose captions are compared before a start
log = logging.getLogger("laclip.train")


def uses_rewrites(cfg: TrainConfig) -> bool:
    return bool(cfg.rewrites) and cfg.augment == "laclip"


def check_inputs(cfg: TrainConfig, store: Store | None = None, holding: bool = False) -> list[Shard]:
    """The dataset's shards, once the dataset, the rewrite set, the model name and the run's identity check
    out (`holding`: this process is one of the run's own trainers, so its lease is not another's)."""
    from laclip.train.model_names import check_model_name

    check_model_name(cfg.model)
    store = store or open_store(cfg.root)
    shards = resolve_shards(store, cfg.dataset)
    if cfg.resume not in ("latest", "none"):
        from laclip import layout

        if not layout.checkpoint_steps(store, cfg.run):  # else --resume does not apply (the run continues)
            resume_path(cfg.resume, store)
    if uses_rewrites(cfg):
        from laclip.rewrite.output import read_record

        record = read_record(store, cfg.dataset, cfg.rewrites)
        if cfg.text_probs is not None:
            from laclip.rewrite.draw import check_sources

            check_sources(cfg.text_probs, _set_sources(store, cfg, record), f"rewrite set {cfg.rewrites}")
        check_captions(store, cfg, shards)
    check_run(cfg, store, shards, holding)
    return shards


def _set_sources(store: Store, cfg: TrainConfig, record: dict) -> list[str]:
    """The rewrite set's sources: its record's, else its first shard's columns (a set made elsewhere)."""
    if record.get("sources"):
        return list(record["sources"])
    from laclip import layout
    from laclip.rewrite.output import read_shard, source_columns

    first = layout.rewritten_shards(store, cfg.dataset, cfg.rewrites)[0]
    return source_columns(read_shard(store, cfg.dataset, cfg.rewrites, first))


# -- what a run is: its identity -----------------------------------------------------------------
FRESH = "train it under a new --run, or delete {folder}/ to train this one again"


def content_digest(store: Store, paths: list[str], prefix: str) -> str:
    """The digest of the content of `paths` (all under `prefix`), named relative to it."""
    from laclip.identity import digest

    sums = store.digests(prefix)
    return digest({p[len(prefix):]: sums.get(p) for p in paths}, 32)


def run_identity(cfg: TrainConfig, store: Store, shards: list[Shard]) -> dict:
    """Everything that decides a run's checkpoints: the recipe, and the content (not the names) of the
    dataset's shards and of the rewrite set it draws from."""
    from laclip import layout

    folder = layout.dataset_folder(cfg.dataset) + "/"
    ident = {"recipe": cfg.recipe(),
             "dataset": content_digest(store, [p for s in shards for p in (s.tar, s.parquet) if p], folder)}
    if uses_rewrites(cfg):
        sets = layout.rewrite_folder(cfg.dataset, cfg.rewrites) + "/"
        ident["rewrites"] = content_digest(store, [layout.rewrite_shard(cfg.dataset, cfg.rewrites, sid) for sid in
                                                   sorted(layout.rewritten_shards(store, cfg.dataset, cfg.rewrites))],
                                           sets)
    return ident


def recorded_identity(record: dict) -> tuple[dict, bool]:
    """(identity, complete) of a run record; a record written before runs had one holds the config alone:
    its recipe is compared, the data it was trained on cannot be."""
    if isinstance(record.get("identity"), dict):
        return record["identity"], True
    known = {k: v for k, v in record.items() if k in TrainConfig.model_fields}
    try:
        return {"recipe": TrainConfig.model_validate({**known, "eval_job": None}).recipe()}, False
    except ValueError:
        return {"recipe": None}, False


def check_run(cfg: TrainConfig, store: Store, shards: list[Shard], holding: bool = False) -> dict:
    """The run's identity, once it is known that the run's record (if any) holds the same one: a start
    of a run with other settings or on other data would hand back (or extend) checkpoints that are not
    what it asks for. A UsageError names what changed and how to start afresh. Unless this process holds
    the run's lease (`holding`), a live trainer of the run is named first (LeaseHeld)."""
    from laclip import claim, layout
    from laclip.lease import Lease, owner_token

    if not holding:  # a run trained right now: that is the first thing to say
        Lease(store, cfg.run, cfg.owner or owner_token(), cfg.lease_timeout_s).check_free()
    ident = run_identity(cfg, store, shards)
    path = layout.run_record(cfg.run)
    fix = FRESH.format(folder=store.url_of(layout.run_folder(cfg.run)))
    record = claim.read_record(store, path, fix)
    if record is None:
        return ident
    before, complete = recorded_identity(record)
    diff = _changes(before, ident if complete else {"recipe": ident["recipe"]})
    if diff:
        raise UsageError(f"{store.url_of(path)} records run {cfg.run!r} trained with other settings or data "
                         f"({claim.summary(diff)}): {fix}")
    return ident


def _changes(before: dict, now: dict) -> list[str]:
    """What differs between two run identities, in the words of a resume check."""
    from laclip import claim

    old, new = before.get("recipe") or {}, now.get("recipe") or {}
    found = [f"{k}: checkpoint has {old.get(k)!r}, this run asks for {new.get(k)!r}"
             for k in sorted(set(old) | set(new)) if not claim.same(old.get(k), new.get(k))]
    for part, what in (("dataset", "the dataset's shards"), ("rewrites", "the rewrite set")):
        if part in before or part in now:
            if not claim.same(before.get(part), now.get(part)):
                found.append(f"{part}: {what} hold other content than the run was trained on" if part in before
                             and part in now else f"{part}: {'not used' if part not in now else 'now used'}")
    return found


def claim_run(cfg: TrainConfig, store: Store, shards: list[Shard], config: dict) -> None:
    """The run record (checkpoints/<run>/config.json): the config and identity of a run's first start,
    written once; every later start must bring the same identity (check_run). Called by the holder of the
    run's lease."""
    from laclip import claim, layout

    if claim.read_record(store, layout.run_record(cfg.run)) is not None:
        check_run(cfg, store, shards, holding=True)
        return
    ident = run_identity(cfg, store, shards)
    fresh = FRESH.format(folder=store.url_of(layout.run_folder(cfg.run)))
    claim.claim(store, layout.run_record(cfg.run), {**config, "identity": ident}, key="identity",
                what=f"run {cfg.run!r} trained with other settings or data", fresh=fresh)


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
        try:
            now = dict(read_captions(store, shard))
        except (DataError, NotFound) as exc:  # the trainer reads the tar: a bad parquet is counted, not fatal
            log.warning("not comparing captions of shard %s: %s", shard.id, exc)
            continue
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



@dataclass
class Scan:
    """What the trainer learns from the dataset's parquets at start (the tars are what it trains on)."""

    samples: int  # usable samples, counted (or estimated from a probe of a large dataset)
    unreadable: dict[str, str] = field(default_factory=dict)  # shard id -> why its parquet cannot be used
    repeated: dict[str, set[str]] = field(default_factory=dict)  # shard id -> keys an earlier shard holds
    skipped_rows: Counter = field(default_factory=Counter)  # bad rows by reason (laclip.data.shards)
    complete: bool = True  # every parquet read (else a probe: repeats across shards are not known)


def scan(store: Store, shards: list[Shard], full: int) -> Scan:
    """Read every parquet of a dataset of at most `full` shards (samples, keys in two shards, bad rows),
    else count a probe of them. A parquet that cannot be used is counted and left out, never fatal."""
    from laclip.train.data import count_samples

    if len(shards) > full:
        unreadable: dict[str, str] = {}
        return Scan(count_samples(store, shards, unreadable=unreadable), unreadable, complete=False)
    found = Scan(0)
    keys = {}
    for shard in shards:
        try:
            rows = read_rows(store, shard)
        except (DataError, NotFound) as exc:
            found.unreadable[shard.id] = str(exc)
            continue
        keys[shard.id] = [k for k, _ in rows.rows]
        found.skipped_rows.update(rows.skipped)
        found.samples += len(rows.rows)
    found.repeated = repeated_keys(keys)
    found.samples -= sum(len(v) for v in found.repeated.values())
    if keys and found.unreadable:  # their tars are trained on too: estimate their samples
        found.samples = round(found.samples * len(shards) / len(keys))
    return found


def resume_path(ref: str, store: Store) -> str:
    """The store path of the checkpoint `--resume REF` names: a path in the store, `RUN/step_N`, or a
    URL or absolute path inside the store; a usage error naming what is there otherwise."""
    import os

    from laclip import layout
    from laclip.errors import UsageError

    path = ref.strip()
    base = store.url.rstrip("/") + "/"
    if path.startswith(base):
        path = path[len(base):]
    elif "://" in path or os.path.isabs(os.path.expanduser(path)):
        local = os.path.abspath(os.path.expanduser(path))
        if store.local_path("") is None or not local.startswith(base):
            raise UsageError(f"--resume {ref!r} is not in the store {store.url}: a run resumes from a checkpoint "
                             "in its own store (copy it there, e.g. under checkpoints/OTHER-RUN/)")
        path = local[len(base):]
    named = layout.in_run_folder(path)
    for candidate in dict.fromkeys([path, named, path + ".pt", named + ".pt"]):
        if candidate and store.exists(candidate):
            return candidate
    steps = layout.checkpoint_steps(store, path.strip("/").removeprefix(layout.CHECKPOINTS + "/"))
    hint = f" (it is a run folder: name one of its checkpoints, e.g. {steps[-1][1]})" if steps else ""
    raise UsageError(f"--resume {ref!r}: no checkpoint file {store.url_of(path)}{hint}")

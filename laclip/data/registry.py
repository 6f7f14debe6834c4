"""Dataset presets and discovery: any `datasets/<name>/` folder with shards is a dataset."""

from __future__ import annotations

from dataclasses import dataclass

from laclip import layout
from laclip.data.shards import SHARD_RE, Shard, list_shards
from laclip.errors import DataError, UsageError
from laclip.storage.base import Store

SAMPLES_PER_SHARD = 10_000  # img2dataset's default
# `laclip data synth` writes SYNTH_SETTINGS first and SYNTH_MARKER last into datasets/<name>/: a folder
# with the first and not the second is a build that did not finish, and no command may use it.
SYNTH_MARKER, SYNTH_SETTINGS = "synth.json", "synth-build.json"


@dataclass(frozen=True)
class Preset:
    name: str
    samples: int  # nominal, as published; downloads lose a few percent to dead links
    description: str
    kind: str = "img2dataset"  # or "clip_benchmark" for evaluation sets
    per_shard: int = SAMPLES_PER_SHARD

    @property
    def shards(self) -> int:
        return -(-self.samples // self.per_shard)

    @property
    def folder(self) -> str:
        return layout.dataset_folder(self.name)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("cc3m", 3_300_000, "Conceptual Captions 3M (alt-text, hypernymised)"),
        Preset("cc12m", 12_000_000, "Conceptual 12M (alt-text)"),
        Preset("redcaps", 12_000_000, "RedCaps (Reddit image posts and titles)"),
        Preset("laion400m", 400_000_000, "LAION-400M (CLIP-filtered Common Crawl alt-text)"),
        Preset("demo", 4_096, "synthetic shapes made by `laclip data synth` (the embedded default)", per_shard=512),
    )
}

NAME_RULE = "lower-case letters, digits and '-', starting with a letter, at most 40 characters"


def check_name(name: str) -> str:
    """Dataset names become Kubernetes label values and object names: keep them DNS-safe."""
    import re

    if not re.fullmatch(r"[a-z][a-z0-9-]{0,39}", name or "") or name.endswith("-"):
        raise UsageError(f"invalid dataset name {name!r}: use {NAME_RULE}")
    return name


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    folder: str
    kind: str  # "img2dataset" or "clip_benchmark"
    shards: int
    preset: Preset | None


def discover(store: Store) -> dict[str, DatasetInfo]:
    """Every dataset folder under `datasets/`, with its shard count."""
    counts: dict[str, dict[str, set]] = {}
    for path in store.list(layout.DATASETS + "/"):
        parts = path.split("/")
        name = layout.dataset_name(path)
        if name is None:
            continue
        entry = counts.setdefault(name, {"img2dataset": set(), "clip_benchmark": set()})
        if len(parts) == 3 and SHARD_RE.fullmatch(parts[2]):
            entry["img2dataset"].add(parts[2].split(".")[0])
        elif parts[-1] == "nshards.txt":
            entry["clip_benchmark"].add("/".join(parts[2:-1]))
    found = {}
    for name, entry in sorted(counts.items()):
        kind = "img2dataset" if entry["img2dataset"] else ("clip_benchmark" if entry["clip_benchmark"] else None)
        if kind is None:
            continue
        found[name] = DatasetInfo(name, layout.dataset_folder(name), kind, len(entry[kind]), PRESETS.get(name))
    return found


def dataset_folder(name: str) -> str:
    return layout.dataset_folder(check_name(name))


def unfinished_build(store: Store, name: str) -> str | None:
    """The folder of an unfinished `laclip data synth` build that `name` (or `name` = <base>-eval)
    belongs to, else None."""
    for base in {name, name.removesuffix("-eval")}:
        folder = layout.dataset_folder(base)
        if store.exists(f"{folder}/{SYNTH_SETTINGS}") and not store.exists(f"{folder}/{SYNTH_MARKER}"):
            return folder
    return None


def check_built(store: Store, name: str) -> None:
    """Refuse a dataset that an interrupted (or still running) `laclip data synth` left half written."""
    folder = unfinished_build(store, name)
    if folder is not None:
        raise DataError(f"dataset {name!r} in {store.url_of(folder)}/ is a `laclip data synth` build that did not "
                        "finish (interrupted, or still running): run `laclip data synth` again to complete it "
                        "(what is written is kept), or with --overwrite to start over")


def resolve_shards(store: Store, name: str) -> list[Shard]:
    """The shards of dataset `name`, or a clear error that says what exists."""
    check_name(name)
    shards = list_shards(store, name, dataset_folder(name))
    if shards:
        check_built(store, name)
        return shards
    if name in PRESETS:
        hint = (
            "run `laclip data synth` to build it" if name == "demo"
            else f"download it with img2dataset (--output_format webdataset) into {store.url_of(dataset_folder(name))}/"
        )
        raise DataError(f"dataset {name!r} has no shards in {store.url_of(dataset_folder(name))}/: {hint}")
    found = discover(store)
    if name in found:  # e.g. demo-eval: an evaluation set, not image-text shards to train on
        raise DataError(f"dataset {name!r} is a {found[name].kind} evaluation set, not img2dataset shards: "
                        f"use it with `laclip submit eval --datasets {name}`")
    known = sorted(set(PRESETS) | {n for n, info in found.items() if info.kind == "img2dataset"})
    raise DataError(f"unknown dataset {name!r}: known datasets are {', '.join(known)}")

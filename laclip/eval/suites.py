"""Benchmark suites: a name for a published evaluation (its datasets, in its order, and the tasks its
protocol runs on each), kept as data files, not code.

    laclip/eval/data/suites/<name>.json   shipped: laclip-paper (ImageNet + the LaCLIP paper's 15
                                          downstream sets), datacomp (DataComp's 38 tasks)
    $LACLIP_SUITES                        more folders of <name>.json (os.pathsep between them)

A suite file names its source (paper, table, protocol), and for every dataset: `name` (its folder
under datasets/, CLIP_benchmark's webdataset name with '/' and '_' made '-'), `wds` (CLIP_benchmark's
own name), `hub` (the Hugging Face dataset repo holding its webdataset copy, fetched by `laclip
datasets get-eval`), `tasks` (what the protocol runs on it), `group` (which average it enters),
`metric` (the suite's main metric where it is not the task's headline), `images` (per split, for
`laclip plan`). `table` is the column order of the suite's table, "@average" marking the average.

`--datasets laclip-paper,my-set` expands a suite in place; plain names pass through. No torch here.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from laclip.errors import UsageError
from laclip.eval import tasks as task_registry

log = logging.getLogger("laclip.eval")

SUITES_ENV = "LACLIP_SUITES"
AVERAGE = "@average"
ALL = "*"  # in `average`: every dataset of the suite


class SuiteDataset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    title: str
    wds: str | None = None
    hub: str | None = None
    task: str | None = None  # the suite's own key for it (DataComp's task name)
    tasks: list[str]
    group: str = "downstream"
    metric: str | None = None
    images: dict[str, int | None] = Field(default_factory=dict)
    note: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        from laclip.data.registry import check_name

        try:
            return check_name(value)
        except UsageError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, value: list[str]) -> list[str]:
        return [task_registry.canonical(t) for t in value]

    def splits(self, tasks: list[str] | None = None) -> list[str]:
        """The splits `tasks` (default: the suite's) read on this dataset."""
        tasks = self.tasks if tasks is None else tasks
        if not tasks:
            return []
        return ["test", "train"] if any(task_registry.get(t).reads_train for t in tasks) else ["test"]


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    title: str
    source: dict[str, str]
    data: str
    images_source: str
    average: list[str] = Field(default_factory=lambda: ["downstream"])
    table: list[str] = Field(default_factory=list)
    datasets: list[SuiteDataset] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> "Suite":
        names = [d.name for d in self.datasets]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"dataset {dup[0]!r} is listed twice")
        unknown = [c for c in self.table if c != AVERAGE and c not in names]
        if unknown:
            raise ValueError(f"table column {unknown[0]!r} is none of the suite's datasets")
        if not self.table:
            self.table = names + [AVERAGE]
        return self

    def dataset(self, name: str) -> SuiteDataset | None:
        return next((d for d in self.datasets if d.name == name), None)

    def averaged(self, entry: SuiteDataset) -> bool:
        return ALL in self.average or entry.group in self.average


def _folders() -> list[Path]:
    extra = [Path(p) for p in os.environ.get(SUITES_ENV, "").split(os.pathsep) if p.strip()]
    return [Path(str(resources.files("laclip.eval").joinpath("data", "suites")))] + extra


def suite_files() -> dict[str, Path]:
    """name -> file of every suite: the shipped ones, then $LACLIP_SUITES (a shipped name is not replaced)."""
    found: dict[str, Path] = {}
    for folder in _folders():
        if folder.is_dir():
            for path in sorted(folder.glob("*.json")):
                found.setdefault(path.stem, path)
    return found


def names() -> list[str]:
    return sorted(suite_files())


def is_suite(name: str) -> bool:
    return name in suite_files()


@lru_cache(maxsize=None)
def _read(path: str, mtime_ns: int) -> Suite:
    try:
        suite = Suite.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        reason = exc.errors()[0] if isinstance(exc, ValidationError) else None
        where = ".".join(str(p) for p in reason["loc"]) + ": " if reason and reason.get("loc") else ""
        why = reason["msg"] if reason else str(exc)
        raise UsageError(f"suite file {path}: {where}{why}") from None
    if suite.name != Path(path).stem:
        raise UsageError(f"suite file {path} calls itself {suite.name!r}: name the file {suite.name}.json")
    return suite


def load(name: str) -> Suite:
    files = suite_files()
    if name not in files:
        raise UsageError(f"unknown suite {name!r} (suites: {', '.join(sorted(files))})")
    path = files[name]
    return _read(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=8)
def _catalog(key: tuple) -> dict[str, tuple[SuiteDataset, str]]:
    """Every dataset any suite names: name -> (entry, suite). The first suite to name it gives the entry;
    two suites that give one name two sources are an error (one folder cannot hold both)."""
    found: dict[str, tuple[SuiteDataset, str]] = {}
    for suite_name in names():
        for entry in load(suite_name).datasets:
            if entry.name in found and found[entry.name][0].hub != entry.hub:
                other = found[entry.name]
                raise UsageError(f"dataset {entry.name!r} comes from {other[0].hub} in suite {other[1]} but from "
                                 f"{entry.hub} in suite {suite_name}: give one of them another name")
            if entry.name in found:  # a split counted in one suite only counts for every suite
                first = found[entry.name][0]
                missing = {k: v for k, v in entry.images.items() if first.images.get(k) is None and v is not None}
                if missing:
                    found[entry.name] = (first.model_copy(update={"images": {**first.images, **missing}}),
                                         found[entry.name][1])
            else:
                found[entry.name] = (entry, suite_name)
    return found


def catalog() -> dict[str, tuple[SuiteDataset, str]]:
    """Every dataset any suite names: name -> (entry, suite); see _catalog."""
    files = suite_files()
    return _catalog(tuple((n, str(p), p.stat().st_mtime_ns) for n, p in sorted(files.items())))


def find(name: str) -> SuiteDataset | None:
    hit = catalog().get(name)
    return hit[0] if hit else None


@dataclass
class Expanded:
    datasets: list[str]
    tasks: dict[str, list[str]] = field(default_factory=dict)  # dataset -> tasks, where a suite decided them
    suites: list[str] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (dataset, suite) with no task left


def expand(refs: list[str], tasks: list[str]) -> Expanded:
    """`refs` with every suite name replaced by its datasets, in order, each once (the first mention
    decides its tasks). A suite's dataset gets the suite's tasks among `tasks`; one left with none
    (say `--tasks fewshot` on ImageNet in laclip-paper) is dropped."""
    out = Expanded([])
    seen: set[str] = set()
    for ref in refs:
        if not is_suite(ref):
            if ref not in seen:
                seen.add(ref)
                out.datasets.append(ref)
            continue
        out.suites.append(ref)
        for entry in load(ref).datasets:
            if entry.name in seen:
                continue
            seen.add(entry.name)
            mine = [t for t in tasks if t in entry.tasks]
            if not mine:
                out.dropped.append((entry.name, ref))
                continue
            out.datasets.append(entry.name)
            out.tasks[entry.name] = mine
    return out


def fetch_hint(name: str, root: str | None = None) -> str | None:
    """What makes `name` appear in a store: the get-eval command, or the suite's note; None if no suite knows it."""
    hit = catalog().get(name)
    if hit is None:
        return None
    entry, suite_name = hit
    where = f" --root {root}" if root else ""
    if entry.hub is None:
        return f"{entry.title} has no published webdataset copy ({suite_name}): {entry.note or 'convert it yourself'}"
    return (f"fetch it with `laclip datasets get-eval {name}{where}` (or the whole suite: "
            f"`laclip datasets get-eval {suite_name}{where}`)")

"""GPU-hours, wall time and cost of a stage before it runs (`laclip plan`, `laclip submit`).

Throughput comes from BENCHMARKS.md rows measured on the same accelerator when there are
any, else from published figures (the defaults below, each with its source). Torch-free.

A measured row carries a marker, an HTML comment that Markdown hides:

    <!-- plan: stage=rewrite gpu=a100 per_gpu_per_s=21.5 -->
    <!-- plan: stage=train model=ViT-B-16 gpu=a100 per_gpu_per_s=355 -->

`per_gpu_per_s` is captions/s (rewrite, one generation each), samples/s (train) or
images/s (eval) per GPU; `model` is optional (the row then applies to every model).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from laclip.errors import UsageError

Stage = Literal["rewrite", "train", "eval"]

# Published throughput per A100, and where it comes from.
REWRITE_PER_GPU = 16.0  # captions/s: LaCLIP paper, CC3M rewritten once in 7 h on 8 A100s (LLaMA-7B)
REWRITE_SOURCES = 4  # ChatGPT, Bard, COCO, human meta-pairs: one rewrite each per caption
TRAIN_PER_GPU = {  # samples/s: open_clip's published LAION-400M runs (4,600 and 10,700 A100-hours)
    "ViT-B-32": 790.0,
    "ViT-B-16": 340.0,
}
EPOCHS = {"cc3m": 35, "cc12m": 35, "redcaps": 35, "laion400m": 32}  # the paper's recipes
DEFAULT_EPOCHS = 35
DEFAULT_MODEL = {"laion400m": "ViT-B-32"}  # else ViT-B-16, as in the paper
# Evaluation embeds the images of the benchmark sets once: ImageNet-1k train (1.28M, for the
# linear probe) and val (50k), plus about 100k test images of the downstream sets. A forward pass
# of the image tower costs about a third of a training step per sample, hence 3x the train rate.
EVAL_IMAGES = 1_430_000
EVAL_SPEEDUP = 3.0

MARKER = re.compile(r"<!--\s*plan:(?P<body>[^>]*?)-->")


class Throughput(BaseModel):
    per_gpu_per_s: float
    unit: str
    source: str


class Estimate(BaseModel):
    """What a stage costs: the typed result `laclip plan` shows and `laclip submit` prints."""

    stage: Stage
    dataset: str
    model: str | None
    gpus: int
    work: float  # items to process: generations, samples seen, or images embedded
    unit: str
    throughput: Throughput
    gpu_hours: float
    wall_hours: float
    price_per_gpu_hour: float | None = None
    cost: float | None = None
    notes: list[str] = []

    def summary(self) -> str:
        """One line for `laclip submit` to print before it submits."""
        cost = f", about ${self.cost:,.0f} at ${self.price_per_gpu_hour:g}/GPU-hour" if self.cost is not None else ""
        hours = f"{self.gpu_hours:,.{0 if self.gpu_hours >= 10 else 1}f}"
        return (f"estimate: {self.stage} {self.dataset} on {self.gpus} GPU(s): {hours} GPU-hours, "
                f"about {format_hours(self.wall_hours)} wall time{cost} "
                f"({self.throughput.per_gpu_per_s:g} {self.throughput.unit} per GPU, {self.throughput.source})")


def format_hours(hours: float) -> str:
    if hours < 1:
        return f"{hours * 60:.0f} min"
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"


def benchmarks_file() -> Path | None:
    """$LACLIP_BENCHMARKS, else BENCHMARKS.md beside the package (a source checkout)."""
    env = os.environ.get("LACLIP_BENCHMARKS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
    return here if here.is_file() else None


def measured(stage: str, model: str | None, gpu: str = "a100", path: Path | None = None) -> Throughput | None:
    """The last marker in BENCHMARKS.md for this stage, model and GPU (later rows are newer)."""
    path = path or benchmarks_file()
    if path is None or not path.is_file():
        return None
    found = None
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        for m in MARKER.finditer(line):
            fields = dict(kv.split("=", 1) for kv in m.group("body").split() if "=" in kv)
            if fields.get("stage") != stage or fields.get("gpu", "").lower() != gpu:
                continue
            if fields.get("model") not in (None, model):
                continue
            try:
                rate = float(fields["per_gpu_per_s"])
            except (KeyError, ValueError):
                raise UsageError(f"{path}:{lineno}: a plan marker needs per_gpu_per_s=<number>: {m.group(0)}")
            found = Throughput(per_gpu_per_s=rate, unit=_UNITS[stage], source=f"measured, {path.name}:{lineno}")
    return found


_UNITS = {"rewrite": "captions/s", "train": "samples/s", "eval": "images/s"}


def default_throughput(stage: str, model: str | None) -> Throughput:
    if stage == "rewrite":
        return Throughput(per_gpu_per_s=REWRITE_PER_GPU, unit="captions/s",
                          source="LaCLIP paper: 3.3M captions in 7 h on 8 A100s")
    if model not in TRAIN_PER_GPU:
        raise UsageError(f"no published throughput for model {model!r} (known: {', '.join(TRAIN_PER_GPU)}); "
                         "measure it and add a plan marker to BENCHMARKS.md, or pass --per-gpu-per-s")
    rate = TRAIN_PER_GPU[model]
    if stage == "train":
        return Throughput(per_gpu_per_s=rate, unit="samples/s", source="open_clip's published LAION-400M cost")
    return Throughput(per_gpu_per_s=rate * EVAL_SPEEDUP, unit="images/s",
                      source="3x open_clip's training rate (forward pass of the image tower only)")


def eval_images(datasets: list[tuple[str, list[str]]]) -> tuple[list[tuple[str, int]], list[str]]:
    """Images each evaluation embeds, from the suite files' counts: (name, images) per dataset, and the
    notes on those whose count is unknown. A dataset's test split is embedded for every task, its train
    split too for few-shot and the linear probe (features are cached, so once per split)."""
    from laclip.eval.suites import find

    found, unknown = [], []
    for name, tasks in datasets:
        entry = find(name.rstrip("/").rsplit("/", 1)[-1])
        if entry is None:
            unknown.append(f"{name}: in no suite, its size is unknown (counted as 0)")
            continue
        images = 0
        for split in entry.splits(tasks):
            count = entry.images.get(split)
            if count is None:
                unknown.append(f"{name}: no published size of its {split} split (counted as 0)")
            images += count or 0
        found.append((name, images))
    return found, unknown


def _makespan(durations: list[float], workers: int) -> float:
    """Wall time of jobs started in order on `workers` slots, each on the first slot to free up (the
    Indexed Job's pods start by index as others finish)."""
    slots = [0.0] * max(1, min(workers, len(durations) or 1))
    for d in durations:
        i = slots.index(min(slots))
        slots[i] += d
    return max(slots)


def estimate(stage: Stage, dataset: str, gpus: int, *, model: str | None = None,
             price_per_gpu_hour: float | None = None, samples: int | None = None, epochs: int | None = None,
             sources: int = REWRITE_SOURCES, per_gpu_per_s: float | None = None,
             benchmarks: Path | None = None, datasets: list[tuple[str, list[str]]] | None = None) -> Estimate:
    """Cost of one stage on `gpus` A100s. `samples` defaults to the preset's nominal size. For eval,
    `datasets` [(name, tasks)] (or a suite named by `dataset`) counts the images of each set from the
    suite files, one pod per dataset as the eval Job runs them."""
    from laclip.data.registry import PRESETS, check_name

    if stage == "eval" and datasets is None:
        from laclip.eval.suites import expand, is_suite
        from laclip.eval.tasks import names

        if is_suite(dataset):
            found = expand([dataset], names())
            datasets = [(d, found.tasks.get(d, names())) for d in found.datasets]
    check_name(dataset)
    if stage not in _UNITS:
        raise UsageError(f"unknown stage {stage!r}: use rewrite, train or eval")
    if gpus < 1:
        raise UsageError(f"--gpus must be at least 1, got {gpus}")
    if price_per_gpu_hour is not None and not 0 <= price_per_gpu_hour < math.inf:
        raise UsageError(f"--price-per-gpu-hour must be a finite number, not negative, got {price_per_gpu_hour}")
    for flag, value in (("--per-gpu-per-s", per_gpu_per_s), ("--samples", samples), ("--epochs", epochs)):
        if value is not None and not 0 < value < math.inf:
            raise UsageError(f"{flag} must be positive, got {value}")
    if sources < 1:
        raise UsageError(f"--sources must be at least 1, got {sources}")
    preset = PRESETS.get(dataset)
    if samples is None and not (stage == "eval" and datasets):
        if preset is None:
            raise UsageError(f"dataset {dataset!r} is not a preset, so its size is unknown: pass --samples")
        samples = preset.samples
    if stage != "rewrite":
        model = model or DEFAULT_MODEL.get(dataset, "ViT-B-16")
    if per_gpu_per_s is not None:
        tp = Throughput(per_gpu_per_s=per_gpu_per_s, unit=_UNITS[stage], source="given on the command line")
    else:
        tp = measured(stage, model, path=benchmarks) or default_throughput(stage, model)
    notes: list[str] = []
    if stage == "rewrite":
        work = float(samples) * sources
        unit = "generations"
        notes.append(f"{samples:,} captions x {sources} meta-pair sources")
        gpu_hours = work / tp.per_gpu_per_s / 3600
        # One pod (one GPU) per shard: the job runs in waves of `gpus` shards.
        # Every shard is full but the last, which holds the remainder.
        per_shard = preset.per_shard if preset else 10_000
        shards = max(1, math.ceil(samples / per_shard))
        last = samples - (shards - 1) * per_shard
        waves = math.ceil(shards / gpus)
        # The last wave takes a full shard's time unless its only shard is the short last one.
        last_wave = last if shards - (waves - 1) * gpus == 1 else per_shard
        wall = ((waves - 1) * per_shard + last_wave) * sources / tp.per_gpu_per_s / 3600
        if gpus > shards:
            notes.append(f"only {shards} shards: at most {shards} GPUs work at once")
    elif stage == "train":
        epochs = epochs if epochs is not None else EPOCHS.get(dataset, DEFAULT_EPOCHS)
        work = float(samples) * epochs
        unit = "samples seen"
        notes.append(f"{samples:,} samples x {epochs} epochs, {model}; assumes linear scaling over GPUs")
        gpu_hours = work / tp.per_gpu_per_s / 3600
        wall = gpu_hours / gpus
    elif datasets:
        per_dataset, unknown = eval_images(datasets)
        work = float(sum(n for _, n in per_dataset))
        unit = "images embedded"
        biggest = max(per_dataset, key=lambda p: p[1], default=("-", 0))
        notes.append(f"{len(datasets)} datasets, one pod each; the largest: {biggest[0]} ({biggest[1]:,} images); "
                     f"{model}")
        notes += unknown
        gpu_hours = work / tp.per_gpu_per_s / 3600
        wall = _makespan([n / tp.per_gpu_per_s / 3600 for _, n in per_dataset], gpus)
    else:
        work = float(EVAL_IMAGES)
        unit = "images embedded"
        notes.append(f"ImageNet train+val and downstream test sets, {model}")
        gpu_hours = work / tp.per_gpu_per_s / 3600
        wall = gpu_hours / gpus
    cost = gpu_hours * price_per_gpu_hour if price_per_gpu_hour is not None else None
    return Estimate(stage=stage, dataset=dataset, model=model, gpus=gpus, work=work, unit=unit, throughput=tp,
                    gpu_hours=gpu_hours, wall_hours=wall, price_per_gpu_hour=price_per_gpu_hour, cost=cost,
                    notes=notes)


def try_estimate(stage: Stage, dataset: str, gpus: int, **kwargs) -> Estimate | None:
    """estimate(), or None where no figure applies (a custom model, a dataset of unknown size):
    `laclip submit` prints the estimate when there is one and never refuses to submit for lack of it."""
    try:
        return estimate(stage, dataset, gpus, **kwargs)
    except UsageError:
        return None

"""EvalConfig: one typed config for the eval stage, shared by the CLI, jobs/eval.py and the worker.

No torch here: the CLI builds and renders this config without the [eval] extra.
"""

from __future__ import annotations

import os
import posixpath
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from laclip.config import ClusterOptions

Task = Literal["zeroshot", "fewshot", "linear_probe", "retrieval"]
ALL_TASKS: tuple[str, ...] = ("zeroshot", "fewshot", "linear_probe", "retrieval")
# The task names written into result JSON; CLIP_benchmark's where it has one.
TASK_RESULT_NAMES = {
    "zeroshot": "zeroshot_classification",
    "fewshot": "fewshot_knn",
    "linear_probe": "linear_probe",
    "retrieval": "zeroshot_retrieval",
}
TASK_ALIASES = {"zs": "zeroshot", "zeroshot_classification": "zeroshot", "knn": "fewshot", "fewshot_knn": "fewshot",
                "linear": "linear_probe", "lp": "linear_probe", "zeroshot_retrieval": "retrieval"}
from laclip.layout import CHECKPOINTS  # noqa: E402  (the run folder marker in checkpoint URLs)


class FewShotOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ways: int = Field(5, ge=2)
    shots: int = Field(5, ge=1)
    queries: int = Field(15, ge=1, description="query images per class in each episode")
    episodes: int = Field(600, ge=1)
    k: int = Field(5, ge=1, description="neighbours that vote (at most ways*shots)")
    temperature: float = Field(0.07, gt=0, description="vote weight exp(cosine/T)")


class LinearProbeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    val_fraction: float = Field(0.2, gt=0, lt=1, description="held out of train when no val_split is set")
    # L2 strength lambda searched on a log grid, then refined around the best (as the CLIP paper does).
    reg_min: float = 1e-6
    reg_max: float = 1e2
    grid: int = Field(9, ge=2)
    refine_steps: int = Field(4, ge=0)
    max_iter: int = Field(100, ge=10)


class EvalConfig(BaseModel):
    """What to evaluate (a checkpoint), on what (datasets, tasks), where results go, how pods run."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: str = Field(description="gs://BUCKET/.../checkpoints/RUN/step_N[.pt], a local path, or RUN/step_N "
                                        "(in --root)")
    root: str | None = Field(None, description="store root holding datasets/ and evals/ [default: the "
                                               "checkpoint's root, or --root for RUN/step_N]")
    run: str | None = Field(None, description="results go to evals/<run>/<checkpoint>/ [default: the checkpoint's "
                                              "run folder]")
    model: str | None = Field(None, description="open_clip model name [default: the checkpoint's config.model]")
    datasets: list[str] = Field(default_factory=lambda: ["demo-eval"], min_length=1,
                                description="comma-separated names under datasets/, folder URLs, or suites "
                                            "(laclip-paper, datacomp: `laclip datasets suites`)")
    tasks: list[Task] = Field(default_factory=lambda: list(ALL_TASKS), min_length=1,
                              description="comma-separated: zeroshot, fewshot, linear_probe, retrieval")
    dataset_tasks: dict[str, list[Task]] = Field(
        default_factory=dict, description="tasks of one dataset where they are not --tasks (a suite's protocol "
                                          "fills it: few-shot on the downstream sets only...)")
    suites: list[str] = Field(default_factory=list, description="the suites --datasets named (filled in)")
    parallelism: int | None = Field(None, ge=1, le=1000, description="pods (datasets) at once [default: all]")
    templates: str = Field("auto", description="auto | clip80 | dataset | path of a template file ({c} = class)")
    classnames: str = Field("auto", description="auto | imagenet1k | path of a class-name file")
    test_split: str = "test"
    train_split: str = "train"
    val_split: str | None = None
    batch_size: int = Field(256, ge=1, le=65536, description="images per batch")
    workers: int = Field(4, ge=0, le=256, description="data-loader processes")
    device: str = "auto"
    precision: Literal["fp32", "amp"] = Field("fp32", description="fp32 | amp")
    seed: int = Field(0, ge=0, le=2**63 - 1)
    recall_k: list[int] = Field(default_factory=lambda: [1, 5, 10])
    cache_features: bool = True
    fewshot: FewShotOptions = Field(default_factory=FewShotOptions)
    linear_probe: LinearProbeOptions = Field(default_factory=LinearProbeOptions)
    cluster: ClusterOptions = Field(default_factory=ClusterOptions)

    @field_validator("tasks", mode="before")
    @classmethod
    def _aliases(cls, value):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        return list(dict.fromkeys(TASK_ALIASES.get(v.strip(), v.strip()) for v in value))

    @field_validator("datasets", mode="before")
    @classmethod
    def _split_datasets(cls, value):
        if isinstance(value, str):
            value = value.split(",")
        return list(dict.fromkeys(v.strip() for v in value if v.strip()))

    @model_validator(mode="after")
    def _resolve(self) -> "EvalConfig":
        self._expand_suites()
        # few-shot supports and the probe's fit (or its regularisation choice) would see the test images
        if self.test_split in (self.train_split, self.val_split):
            raise ValueError(f"the test split {self.test_split!r} is also the train or validation split")
        ckpt_root, ckpt_path = _locate(self.checkpoint, self.root)
        self.checkpoint = ckpt_root.rstrip("/") + "/" + ckpt_path
        self.root = self.root or ckpt_root
        if self.run is None:
            parent = posixpath.basename(posixpath.dirname(ckpt_path))
            self.run = parent if parent and parent != CHECKPOINTS else \
                (posixpath.basename(ckpt_root.rstrip("/")) or "adhoc")
        if not RUN_RE.fullmatch(self.run):
            raise ValueError(f"run name {self.run!r} must be at most 63 letters, digits, '.', '_' and '-' (it names "
                             "the results folder and labels the Job): pass --run NAME")
        return self

    def _expand_suites(self) -> None:
        """Suite names in `datasets` become their datasets, each with the suite's tasks (among `tasks`)."""
        from laclip.eval.suites import expand

        found = expand(self.datasets, list(self.tasks))
        if found.dropped:
            import logging

            logging.getLogger("laclip.eval").warning(
                "%s: left out, as --tasks %s holds none of the tasks its suite runs there",
                ", ".join(f"{d} ({s})" for d, s in found.dropped), ",".join(self.tasks))
        if not found.datasets:
            raise ValueError(f"--tasks {','.join(self.tasks)} runs on none of the datasets of "
                             f"{', '.join(found.suites)}")
        self.datasets = found.datasets
        self.dataset_tasks = {**found.tasks, **self.dataset_tasks}
        self.suites = list(dict.fromkeys(self.suites + found.suites))
        unknown = sorted(set(self.dataset_tasks) - set(self.datasets))
        if unknown:
            raise ValueError(f"dataset_tasks names {unknown[0]!r}, which is not in --datasets")

    def tasks_for(self, dataset: str) -> list[str]:
        """The tasks to run on `dataset` (a name of `datasets`), in the order of `tasks`."""
        mine = self.dataset_tasks.get(dataset)
        return list(self.tasks) if mine is None else [t for t in self.tasks if t in mine]

    @property
    def checkpoint_root(self) -> str:
        return _locate(self.checkpoint, self.root)[0]

    @property
    def checkpoint_path(self) -> str:
        return _locate(self.checkpoint, self.root)[1]

    @property
    def checkpoint_name(self) -> str:
        return posixpath.basename(self.checkpoint_path).removesuffix(".pt")

    @property
    def checkpoint_url(self) -> str:
        return self.checkpoint

    @property
    def out_dir(self) -> str:
        from laclip import layout

        return layout.eval_folder(self.run, self.checkpoint_name)

    @classmethod
    def for_checkpoint(cls, checkpoint: str, root: str | None = None, **options) -> "EvalConfig":
        return cls(checkpoint=checkpoint, root=root, **options)

    def job_name(self) -> str:
        """`eval-<run>-<checkpoint>`, shortened with a hash when too long: at most 63 characters, less
        the `-<index>` that the API server requires room for in an Indexed Job's pod hostnames."""
        import hashlib

        n = len(self.datasets)
        limit = 63 - (len(f"-{n - 1}") if n > 1 else 0)
        name = f"eval-{slug(self.run)}-{slug(self.checkpoint_name)}".strip("-")
        if len(name) > limit:
            digest = hashlib.sha256(f"{self.run}/{self.checkpoint_name}".encode()).hexdigest()[:6]
            name = name[:limit - 7].rstrip("-") + "-" + digest
        return name


RUN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def _locate(checkpoint: str, root: str | None) -> tuple[str, str]:
    """(store root, path in it) of a checkpoint reference as a user writes it.

    `gs://b/p/checkpoints/RUN/step_N[.pt]` or a local path: the store root is what comes before
    `checkpoints/`. `checkpoints/RUN/step_N` or `RUN/step_N`: relative to `root`."""
    from laclip import layout

    ref = checkpoint.strip()
    if not ref:
        raise ValueError("--checkpoint is empty")
    if "\n" in ref or "\r" in ref:
        raise ValueError(f"checkpoint {checkpoint!r} holds a line break")
    scheme, sep, rest = ref.partition("://")
    if sep or ref.startswith(("/", "./", "../", "~")):
        if sep:
            body = rest.rstrip("/")
            if not body.split("/", 1)[0]:
                raise ValueError(f"checkpoint {checkpoint!r} names no bucket")
            if "/" not in body:
                raise ValueError(f"checkpoint {checkpoint!r} names a bucket but no checkpoint in it "
                                 f"({scheme}://BUCKET/.../{CHECKPOINTS}/RUN/step_N)")
            body = f"{scheme}://{body}"
        else:
            body = os.path.abspath(os.path.expanduser(ref)).rstrip("/") or "/"
        found = layout.split_checkpoint_url(body)
        ckpt_root, ckpt_path = found if found else (posixpath.dirname(body), posixpath.basename(body))
        if sep and not ckpt_root[len(scheme) + 3:].strip("/"):
            raise ValueError(f"checkpoint {checkpoint!r} names no bucket")
    else:
        if root is None:
            from laclip.storage import resolve_root

            root = resolve_root(None)
        ckpt_root, ckpt_path = root, layout.in_run_folder(ref)
    if not posixpath.basename(ckpt_path).removesuffix(".pt"):
        raise ValueError(f"checkpoint {checkpoint!r} names no file")
    return ckpt_root or "/", ckpt_path

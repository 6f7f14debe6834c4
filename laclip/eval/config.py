"""EvalConfig: one typed config for the eval stage, shared by the CLI, jobs/eval.py and the worker.

No torch here: the CLI builds and renders this config without the [eval] extra.
"""

from __future__ import annotations

import os
import posixpath
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from laclip.config import ClusterOptions
from laclip.data.images import LIMIT_HELP, PIL_LIMIT
from laclip.eval import tasks as task_registry
from laclip.eval.suites import expand
from laclip.followup import job_name, slug  # noqa: F401  (slug: for the eval and fetch Jobs' names)
from laclip.layout import CHECKPOINTS  # the run folder marker in checkpoint URLs

Task = Literal[tuple(task_registry.names())]  # our names; --tasks also takes aliases (task_registry.ACCEPTED)


class _EvalSettings(BaseModel):
    """What to evaluate (a checkpoint), on what (datasets, tasks), where results go, how pods run; EvalConfig
    adds each task's options."""

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
    tasks: list[Task] = Field(default_factory=task_registry.names, min_length=1,
                              description="comma-separated: " + ", ".join(task_registry.names()))
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
    recall_k: list[Annotated[int, Field(ge=1, le=10**6)]] = Field(default_factory=lambda: [1, 5, 10], min_length=1)
    max_image_pixels: int | None = Field(None, ge=1, le=PIL_LIMIT, description=LIMIT_HELP)
    cache_features: bool = True
    cluster: ClusterOptions = Field(default_factory=ClusterOptions)

    @field_validator("tasks", mode="before")
    @classmethod
    def _aliases(cls, value):
        return _task_names(value)

    @field_validator("dataset_tasks", mode="before")
    @classmethod
    def _dataset_aliases(cls, value):
        return {k: _task_names(v) for k, v in value.items()} if isinstance(value, dict) else value

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
        """`eval-<run>-<checkpoint>` within the name limits of an Indexed Job (laclip.followup.job_name)."""
        return job_name("eval", self.run, self.checkpoint_name, len(self.datasets))


# One field per task with options (`fewshot`, `linear_probe`), from the task registry: `--set fewshot.episodes=200`
# and --config-file reach them, and a new task's options need no line here.
EvalConfig = create_model(
    "EvalConfig", __base__=_EvalSettings, __module__=__name__,
    **{t.name: (t.options, Field(default_factory=t.options)) for t in task_registry.TASKS if t.options})
EvalConfig.__doc__ = "What to evaluate (a checkpoint), on what (datasets, tasks), where results go, how pods run."


def _task_names(value):
    """Tasks as typed (comma-separated text or a list; aliases and CLIP_benchmark's names) as our names."""
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return value  # pydantic says what is wrong
    return list(dict.fromkeys(task_registry.ACCEPTED.get(v.strip(), v.strip()) for v in value))


RUN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


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

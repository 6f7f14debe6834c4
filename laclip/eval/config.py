"""EvalConfig: one typed config for the eval stage, shared by the CLI, jobs/eval.py and the worker.

No torch here: the CLI builds and renders this config without the [eval] extra.
"""

from __future__ import annotations

import posixpath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from laclip.config import ClusterOptions
from laclip.errors import UsageError

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
CHECKPOINTS_DIR = "checkpoints"
EVALS_DIR = "evals"


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

    root: str = Field(description="store root holding datasets/ and evals/")
    checkpoint_root: str = Field(description="store root holding the checkpoint")
    checkpoint_path: str = Field(description="checkpoint path in that store (.pt optional)")
    run: str = Field(description="training run: results go to evals/<run>/<checkpoint_name>/")
    checkpoint_name: str
    model: str | None = Field(None, description="open_clip model name; default: the checkpoint's config.model")
    datasets: list[str] = Field(default_factory=lambda: ["demo-eval"], min_length=1)
    tasks: list[Task] = Field(default_factory=lambda: list(ALL_TASKS), min_length=1)
    templates: str = Field("auto", description="auto (dataset file, else CLIP's 80), clip80, dataset, or a path/URL")
    classnames: str = Field("auto", description="auto (dataset file, else shipped ImageNet-1k), imagenet1k, path/URL")
    test_split: str = "test"
    train_split: str = "train"
    val_split: str | None = None
    batch_size: int = Field(256, ge=1)
    workers: int = Field(4, ge=0)
    device: str = "auto"
    precision: Literal["fp32", "amp"] = "fp32"
    seed: int = 0
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
    def _no_test_leak(self) -> "EvalConfig":
        # few-shot supports and the probe's fit (or its regularisation choice) would see the test images
        if self.test_split in (self.train_split, self.val_split):
            raise ValueError(f"the test split {self.test_split!r} is also the train or validation split")
        return self

    @property
    def out_dir(self) -> str:
        return f"{EVALS_DIR}/{self.run}/{self.checkpoint_name}"

    @classmethod
    def for_checkpoint(cls, checkpoint: str, root: str | None = None, **options) -> "EvalConfig":
        """Build a config from a checkpoint reference as a user writes it.

        `gs://b/p/checkpoints/RUN/step_N[.pt]` or a local path: the store root is what comes
        before `checkpoints/`, and it is also the data root unless `root` is given.
        `checkpoints/RUN/step_N` or `RUN/step_N`: relative to `root`.
        """
        ref = checkpoint.strip()
        if not ref:
            raise UsageError("--checkpoint is empty")
        is_url = "://" in ref or ref.startswith(("/", "./", "../", "~"))
        if is_url:
            scheme, sep, rest = ref.partition("://")
            body = rest.rstrip("/") if sep else (ref.rstrip("/") or "/")
            if sep and not body.split("/", 1)[0]:
                raise UsageError(f"checkpoint {checkpoint!r} names no bucket")
            if sep and "/" not in body:
                raise UsageError(f"checkpoint {checkpoint!r} names a bucket but no checkpoint in it "
                                 f"({scheme}://BUCKET/.../checkpoints/RUN/step_N)")
            marker = f"/{CHECKPOINTS_DIR}/"
            if marker in body:
                prefix, _, tail = body.rpartition(marker)
                ckpt_root = (scheme + sep + prefix) if sep else (prefix or "/")
                ckpt_path = f"{CHECKPOINTS_DIR}/{tail}"
            else:
                ckpt_root, ckpt_path = (scheme + sep + posixpath.dirname(body)) if sep else posixpath.dirname(body), \
                    posixpath.basename(body)
            if sep and not ckpt_root[len(scheme) + 3:].strip("/"):
                raise UsageError(f"checkpoint {checkpoint!r} names no bucket")
        else:
            if root is None:
                from laclip.storage import resolve_root

                root = resolve_root(None)
            ckpt_root = root
            ckpt_path = ref.strip("/")
            if not ckpt_path.startswith(CHECKPOINTS_DIR + "/"):
                ckpt_path = f"{CHECKPOINTS_DIR}/{ckpt_path}"
        parent, name = posixpath.split(ckpt_path)
        run = posixpath.basename(parent) or posixpath.basename(ckpt_root.rstrip("/")) or "adhoc"
        if name.endswith(".pt"):
            name = name[:-3]
        if not name:
            raise UsageError(f"checkpoint {checkpoint!r} names no file")
        return cls(root=root or ckpt_root, checkpoint_root=ckpt_root, checkpoint_path=ckpt_path, run=run,
                   checkpoint_name=name, **options)

    @property
    def checkpoint_url(self) -> str:
        return self.checkpoint_root.rstrip("/") + "/" + self.checkpoint_path

"""TrainConfig: the one typed config shared by `laclip submit train`, jobs/train.py and the
torchrun entrypoint, plus presets for the paper's recipes. Importable without torch."""

from __future__ import annotations

import json
import math
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from laclip.config import ClusterOptions, explain
from laclip.errors import UsageError

Augment = Literal["laclip", "none"]
LossKind = Literal["clip", "multitext"]
Precision = Literal["auto", "amp_bf16", "amp", "fp32"]
# Whole-Job restarts on Spot VMs unless --max-job-retries says otherwise: a multi-day run survives
# that many preemptions, while a run that crashes on every start still ends.
SPOT_JOB_RETRIES = 20


class TrainConfig(BaseModel):
    """Everything one training run needs. Per-process values (batch_size) are per GPU/process."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    run: str
    root: Optional[str] = None  # store root; None: $LACLIP_ROOT or the default folder
    dataset: str = "demo"
    rewrites: Optional[str] = None  # rewrite id under rewrites/<dataset>/
    augment: Augment = "laclip"
    min_words: int = Field(2, ge=0)  # reference fallback: texts under 2 words use the original

    # model and optimisation
    model: str = "ViT-B-16"
    batch_size: int = Field(256, ge=1)  # per process
    steps: Optional[int] = Field(None, ge=1)  # total optimiser steps; None: from epochs
    epochs: float = Field(35, gt=0)
    lr: float = Field(1e-3, gt=0)
    wd: float = Field(0.5, ge=0)
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-8
    warmup_epochs: float = Field(1.0, ge=0)
    warmup_steps: Optional[int] = Field(None, ge=0)  # overrides warmup_epochs
    loss: LossKind = "clip"
    texts_per_image: int = Field(1, ge=1, le=8)
    local_loss: bool = False
    gather_with_grad: bool = False
    precision: Precision = "auto"  # auto: bf16 autocast on GPU, fp32 on CPU
    grad_checkpointing: bool = False
    crop_scale: tuple[float, float] = (0.5, 1.0)
    grad_clip: Optional[float] = None
    seed: int = 0

    # data loading
    workers: int = Field(4, ge=0)
    shuffle_buffer: int = Field(1000, ge=1)

    # durability and logging
    checkpoint_every: int = Field(1000, ge=1)  # steps
    keep_last: int = Field(3, ge=1)
    # "latest", "none", or a checkpoint path in the store; none/a path only while the run has no checkpoint
    resume: str = "latest"
    log_every: int = Field(20, ge=1)
    tensorboard: bool = True
    # an eval Job per checkpoint written to a bucket (laclip.train.eval_hook); empty: none
    eval_datasets: list[str] = Field(default_factory=list)

    # where it runs (jobs/ only)
    cluster: ClusterOptions = Field(default_factory=ClusterOptions)
    nodes: str = "1"  # torchrun --nnodes: "N" or "MIN:MAX"
    procs_per_node: Optional[int] = Field(None, ge=1)  # None: cluster.gpus (1 without GPUs)
    max_restarts: int = Field(3, ge=0)
    # Volcano restarts of the whole Job (a pod failed or evicted); each resumes from the newest
    # checkpoint. None: max_restarts, or SPOT_JOB_RETRIES on Spot VMs (see job_retries()).
    max_job_retries: Optional[int] = Field(None, ge=0)

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        if self.loss == "clip" and self.texts_per_image != 1:
            raise ValueError("--texts-per-image needs --loss multitext")
        if self.loss == "multitext" and self.texts_per_image < 2:
            raise ValueError("--loss multitext needs --texts-per-image of at least 2")
        if self.local_loss and not self.gather_with_grad:
            # open_clip would run it, but each rank's loss then misses its features' terms in the
            # other ranks' rows, and DDP averages incomplete gradients
            raise ValueError("--local-loss needs --gather-with-grad (without it the gradients are incomplete)")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop scale {self.crop_scale} must satisfy 0 < min <= max <= 1")
        self.nnodes()  # validates the format
        return self

    def nnodes(self) -> tuple[int, int]:
        parts = self.nodes.split(":")
        try:
            lo, hi = (int(parts[0]), int(parts[-1])) if len(parts) <= 2 else (None, None)
        except ValueError:
            lo = hi = None
        if lo is None or not 1 <= lo <= hi:
            raise ValueError(f"--nodes {self.nodes!r} must be N or MIN:MAX with 1 <= MIN <= MAX")
        return lo, hi

    def job_retries(self) -> int:
        """Volcano counts every restart, a preemption as much as a crash. GKE can reclaim a Spot VM
        at any time, so a run of days can see many; a fixed budget of 3 would end it while the
        checkpoints make each restart cost at most checkpoint_every steps."""
        if self.max_job_retries is not None:
            return self.max_job_retries
        return max(self.max_restarts, SPOT_JOB_RETRIES) if self.cluster.spot else self.max_restarts

    def nproc(self) -> int:
        return self.procs_per_node or max(1, self.cluster.gpus)

    def total_steps(self, samples: int, world_size: int) -> int:
        return self.steps or max(1, math.ceil(self.epochs * samples / (self.batch_size * world_size)))

    def warmup(self, samples: int, world_size: int) -> int:
        if self.warmup_steps is not None:
            return self.warmup_steps
        return math.ceil(self.warmup_epochs * samples / (self.batch_size * world_size))

    def to_arg(self) -> str:
        """Compact JSON for the container command. Every field, so that an image built with
        other defaults than the submitting CLI still runs exactly what was submitted."""
        return json.dumps(self.model_dump(mode="json"), separators=(",", ":"))


# Fields that must match to continue a run from its checkpoint (others may change).
RESUME_KEYS = ("model", "dataset", "loss", "texts_per_image")


def parse_config(text: str) -> TrainConfig:
    try:
        return TrainConfig.model_validate_json(text)
    except ValidationError as exc:
        raise UsageError(f"invalid training config: {exc}") from None


# Paper recipes (reference.md). Batch sizes are per process: 8192 = 8 nodes x 8 GPUs x 128.
# Pods fill an a2-highgpu-8g node (8 A100s, 96 vCPUs, 680 GB) less what GKE reserves.
_A2_NODE = dict(gpus=8, cpu="88", memory="600Gi")
PRESETS: dict[str, dict] = {
    "cc3m": dict(dataset="cc3m", model="ViT-B-16", batch_size=128, epochs=35, lr=1e-3, wd=0.5,
                 warmup_epochs=1, crop_scale=(0.5, 1.0), checkpoint_every=1000, **_A2_NODE),
    "cc12m": dict(dataset="cc12m", model="ViT-B-16", batch_size=128, epochs=35, lr=1e-3, wd=0.5,
                  warmup_epochs=1, crop_scale=(0.5, 1.0), checkpoint_every=1000, **_A2_NODE),
    "redcaps": dict(dataset="redcaps", model="ViT-B-16", batch_size=128, epochs=35, lr=1e-3, wd=0.5,
                    warmup_epochs=1, crop_scale=(0.5, 1.0), checkpoint_every=1000, **_A2_NODE),
    # OpenCLIP's LAION-400M settings: 32768 = 32 nodes x 8 x 128, lr 5e-4, wd 0.2, 2000 warm-up steps
    "laion400m": dict(dataset="laion400m", model="ViT-B-32", batch_size=128, epochs=32, lr=5e-4, wd=0.2,
                      warmup_steps=2000, crop_scale=(0.9, 1.0), local_loss=True, gather_with_grad=True,
                      checkpoint_every=2000, **_A2_NODE),
    # A tiny CLIP on the synthetic shapes: ~2 minutes on 2 CPU cores (BENCHMARKS.md).
    "demo": dict(dataset="demo", model="laclip-tiny", batch_size=64, steps=360, lr=2e-3, wd=0.1,
                 warmup_steps=30, crop_scale=(0.7, 1.0), workers=1, shuffle_buffer=256,
                 checkpoint_every=120, keep_last=2, log_every=20, precision="fp32",
                 gpus=0, cpu="2", memory="4Gi"),
}
# Per-preset cluster sizing lives under these keys and goes to ClusterOptions.
_CLUSTER_KEYS = {"gpus", "cpu", "memory"}


def preset(name: str, **overrides) -> TrainConfig:
    """A TrainConfig from a preset, with explicit overrides (None means 'keep the preset')."""
    if name not in PRESETS:
        raise UsageError(f"unknown training preset {name!r}: choose one of {', '.join(PRESETS)}")
    values = {k: v for k, v in PRESETS[name].items() if k not in _CLUSTER_KEYS}
    cluster = overrides.pop("cluster", None) or ClusterOptions()
    sizing = {k: v for k, v in PRESETS[name].items() if k in _CLUSTER_KEYS and k not in cluster.model_fields_set}
    cluster = cluster.model_copy(update=sizing)  # the preset's pod size, unless given explicitly
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainConfig(cluster=cluster, **values)
    except ValidationError as exc:
        raise UsageError(explain(exc)) from None

"""TrainConfig: the one typed config shared by `laclip submit train`, jobs/train.py and the
torchrun entrypoint, plus presets for the paper's recipes. Importable without torch."""

from __future__ import annotations

import json
import math
import re
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from laclip.config import ClusterOptions, explain
from laclip.data.images import LIMIT_HELP, PIL_LIMIT
from laclip.errors import UsageError

Augment = Literal["laclip", "none"]
LossKind = Literal["clip", "multitext"]
Precision = Literal["auto", "amp_bf16", "amp", "fp32"]
# Whole-Job restarts on Spot VMs unless --max-job-retries says otherwise: a multi-day run survives
# that many preemptions, while a run that crashes on every start still ends.
SPOT_JOB_RETRIES = 20
TopologyMode = Literal["preferred", "required"]
# GKE labels nodes with their place in the data centre (block > sub-block > host); a block is the
# largest domain of low-latency links (manifests/components/kueue-topology names these levels).
DEFAULT_TOPOLOGY_LEVEL = "cloud.google.com/gce-topology-block"
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                        r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


class TrainConfig(BaseModel):
    """Everything one training run needs. Per-process values (batch_size) are per GPU/process."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    run: str = Field(description="run id [default: train-<clip|laclip>-<dataset>-<time>-<random>]")
    root: Optional[str] = Field(None, description="store root; None: $LACLIP_ROOT or the default folder")
    preset: Optional[str] = Field(None, description="recipe the defaults come from: cc3m, cc12m, redcaps, "
                                                    "laion400m, demo [default: the dataset's, else cc12m]")
    owner: Optional[str] = None  # the lease owner token of one submission (laclip.lease), set by the CLI
    dataset: str = Field("demo", description="dataset under datasets/ (cc3m, cc12m, laion400m, demo...)")
    rewrites: Optional[str] = Field(None, description="rewrite id under rewrites/<dataset>/ (none: plain CLIP)")
    augment: Augment = Field("laclip", description="laclip: draw each text from original+rewrites; none: CLIP")
    # weights of the draw by source, `caption` the original (laclip.rewrite.draw); None: uniform (LaCLIP's)
    text_probs: Optional[dict[str, float]] = Field(
        None, description="SOURCE=WEIGHT,...: how often each text is drawn, caption (the original) and every "
                          "rewrite source, e.g. caption=2,chatgpt=1,bard=1,coco=1,human=1 [default: uniform]")
    min_words: int = Field(2, ge=0, le=1000)  # reference fallback: texts under 2 words use the original
    # more rows than this whose rewrite was made from another caption: the set is refused (laclip.train.inputs)
    max_rewrite_mismatch: float = Field(0.01, ge=0, le=1)

    # model and optimisation
    model: str = Field("ViT-B-16", description="open_clip model name, e.g. ViT-B-16 or laclip-tiny")
    batch_size: int = Field(256, ge=1, le=65536,
                            description="per-process batch size (of each sub-batch with --accum-freq)")
    # Contrastive gradient accumulation (laclip.train.step): one optimizer step over accum_freq
    # sub-batches, with the loss and gradients of one batch of batch_size x accum_freq per process.
    accum_freq: int = Field(1, ge=1, le=4096, description="sub-batches per optimizer step: each step trains on "
                            "batch_size x accum_freq samples per process with the loss of one batch that size "
                            "(e.g. the paper's 8192 on one 8-GPU node: --batch-size 128 --accum-freq 8)")
    steps: Optional[int] = Field(None, ge=1, le=10**9, description="total steps [default: from the epochs]")
    epochs: float = Field(35, gt=0, le=10**6, allow_inf_nan=False,
                          description="training epochs  [default: the preset's]")
    lr: float = Field(1e-3, gt=0, le=1e3, allow_inf_nan=False,
                      description="peak learning rate  [default: the preset's]")
    wd: float = Field(0.5, ge=0, le=1e3, allow_inf_nan=False, description="weight decay  [default: the preset's]")
    beta1: float = Field(0.9, ge=0, lt=1)  # AdamW refuses others (in the pod, after the start)
    beta2: float = Field(0.98, ge=0, lt=1)
    eps: float = Field(1e-8, gt=0, le=1)
    warmup_epochs: float = Field(1.0, ge=0, le=10**6, allow_inf_nan=False)
    warmup_steps: Optional[int] = Field(None, ge=0, le=10**9,  # overrides warmup_epochs
                                        description="warm-up steps  [default: the preset's warm-up epochs]")
    loss: LossKind = Field("clip", description="clip or multitext")
    texts_per_image: int = Field(1, ge=1, le=8, description="texts per image with --loss multitext")
    multitext_form: Literal["paper", "pooled"] = Field(
        "paper", description="multitext loss: paper (LaCLIP-MT: one CLIP loss per text slot, averaged) or pooled "
                             "(one softmax over all texts, every text of the image a positive); laclip.train.loss")
    local_loss: bool = Field(False, description="open_clip's local loss (needs --gather-with-grad)")
    gather_with_grad: bool = Field(False, description="gather features with their gradients")
    precision: Precision = Field("auto", description="auto (bf16 autocast on GPU, fp32 on CPU), amp_bf16, amp, fp32")
    grad_checkpointing: bool = Field(False, description="recompute activations in backward (less memory)")
    compile: bool = Field(False, description="torch.compile the model (the first steps are slow while it compiles)")
    crop_scale: tuple[float, float] = (0.5, 1.0)
    grad_clip: Optional[float] = Field(None, gt=0, allow_inf_nan=False)
    seed: int = Field(0, ge=0, le=2**63 - 1, description="seeds data order, initialisation and crops")

    # data loading
    workers: int = Field(4, ge=0, le=256, description="data loader workers per process")
    shuffle_buffer: int = Field(1000, ge=1, le=10_000_000)
    max_image_pixels: Optional[int] = Field(None, ge=1, le=PIL_LIMIT, description=LIMIT_HELP)
    # datasets of at most this many shards have every parquet read at start: exact sample count and
    # keys held by two shards (trained once); larger ones are counted from a probe (laclip.train.inputs)
    scan_shards: int = Field(64, ge=0, le=100_000)

    # durability and logging
    checkpoint_every: int = Field(1000, ge=1, le=10**9, description="steps between checkpoints")
    keep_last: int = Field(3, ge=1, le=10**6, description="checkpoints kept")
    # "latest", "none", or a checkpoint path in the store; none/a path only while the run has no checkpoint
    resume: str = Field("latest", description="latest, none, or a checkpoint path in the store (none and a path "
                                              "apply only while the run has no checkpoint of its own)")
    log_every: int = Field(20, ge=1, le=10**9, description="steps between metric lines")
    # the fraction of a log window spent waiting for the loader above which the run warns (once)
    data_wait_warn: float = Field(0.1, ge=0, le=1, description="warn when the loader keeps training waiting more "
                                  "than this fraction of the time (the loader is the bottleneck)")
    tensorboard: bool = True
    # one owner per run (laclip.lease): a lease not refreshed for this long may be taken over
    lease_timeout_s: float = Field(600, ge=5, le=30 * 86400, allow_inf_nan=False)
    # an eval Job per checkpoint written to a bucket (laclip.train.eval_hook); empty: none
    eval_datasets: list[str] = Field(default_factory=list, description="comma-separated eval datasets: an eval "
                                     "Job on each checkpoint (needs manifests/components/train-submits-eval)")
    # the eval Job the CLI rendered for this run (laclip_jobs.eval), copied per checkpoint by rank 0
    eval_job: Optional[dict] = None

    # where it runs (jobs/ only)
    cluster: ClusterOptions = Field(default_factory=ClusterOptions)
    nodes: str = Field("1", description="nodes: N, or MIN:MAX (elastic, --scheduler volcano only)")
    procs_per_node: Optional[int] = Field(None, ge=1, le=64)  # None: cluster.gpus (1 without GPUs)
    max_restarts: int = Field(3, ge=0, le=1000, description="torchrun restarts of the worker group")
    # Volcano restarts of the whole Job (a pod failed or evicted); each resumes from the newest
    # checkpoint. None: max_restarts, or SPOT_JOB_RETRIES on Spot VMs (see job_retries()).
    max_job_retries: Optional[int] = Field(None, ge=0, le=10_000, description=
                                           "restarts of the whole job after a pod fails or is evicted, each from "
                                           "the newest checkpoint [default: --max-restarts; 20 with --spot]")
    # How the cluster runs the AppDef: the name of a training backend (laclip_jobs.backends.TRAIN, which
    # checks it), such as a JobSet that Kueue admits as one workload (GKE's mainstream for multi-node
    # GPU jobs) or the Volcano Job of TorchX's own scheduler.
    scheduler: str = Field("jobset", pattern=r"^[a-z][a-z0-9-]{0,30}$",
                           description="the backend that runs it on the cluster (laclip_jobs.backends)")
    flex_start: bool = Field(False, description="GKE flex-start (Dynamic Workload Scheduler): Kueue's "
                                                "ProvisioningRequest check gets all nodes at once from a node "
                                                "pool created with queued provisioning [queue: laclip-flex]")
    # The Kueue annotation provreq.kueue.x-k8s.io/maxRunDurationSeconds; None: GKE's default (7 days, its maximum)
    flex_start_max_run_s: Optional[int] = Field(None, ge=60, le=7 * 24 * 3600)
    topology: Optional[TopologyMode] = Field(None, description="Kueue topology-aware placement of the pods: preferred "
                                                           "or required within one --topology-level domain")
    topology_level: str = Field(DEFAULT_TOPOLOGY_LEVEL, description="node label of the topology level the pods "
                                                                    "share [default: GKE's placement block]")
    rdzv_port: int = Field(29500, ge=1024, le=65535, description="port of torchrun's c10d rendezvous on node 0")

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, values):
        """A preset's values under the given ones (its pod size under the cluster options given)."""
        if not isinstance(values, dict) or not values.get("preset"):
            return values
        from laclip.config import merge

        name = values["preset"]
        if name == "auto":  # the CLI's default: the dataset's own recipe, else the paper's CC12M one
            dataset = values.get("dataset") or cls.model_fields["dataset"].default
            name = dataset if dataset in PRESETS else "cc12m"
            values = {**values, "preset": name, "dataset": dataset}
        if name not in PRESETS:
            raise ValueError(f"unknown training preset {name!r}: choose one of {', '.join(PRESETS)}")
        recipe = {k: v for k, v in PRESETS[name].items() if k not in _CLUSTER_KEYS}
        sizing = {k: v for k, v in PRESETS[name].items() if k in _CLUSTER_KEYS}
        cluster = values.get("cluster")
        if isinstance(cluster, BaseModel):  # only what was set explicitly counts as given
            cluster = cluster.model_dump(include=cluster.model_fields_set)
        return merge({**recipe, "cluster": sizing}, {**values, "cluster": cluster or {}})

    @field_validator("rewrites")
    @classmethod
    def _rewrites(cls, value):
        if value is not None and not value.strip():  # `--rewrites "$UNSET"` must not silently train CLIP
            raise ValueError("is empty (an unset variable?): give a rewrite id, or leave it out for plain CLIP")
        return value

    @field_validator("text_probs")
    @classmethod
    def _text_probs(cls, value):
        if value is None:
            return value
        from laclip.rewrite.draw import normalise

        try:
            return normalise(value)
        except UsageError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        if self.text_probs is not None and (not self.rewrites or self.augment != "laclip"):
            raise ValueError("--text-probs weighs the draw from a rewrite set: it needs --rewrites (and --augment "
                             "laclip)")
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
        if self.step_samples(self.nnodes()[0] * self.nproc()) < 2:  # nnodes() also validates the format
            raise ValueError(f"--batch-size {self.batch_size} on one process trains nothing: the contrastive loss over "
                             "a batch of 1 is 0 (no other sample to tell the pair from); use --batch-size 2 or more")
        if self.flex_start and self.cluster.gpus < 1:
            raise ValueError("--flex-start provisions GPU nodes: it needs --gpus-per-node of at least 1")
        if self.flex_start and self.cluster.spot:
            raise ValueError("--flex-start and --spot exclude each other: flex-start nodes come from their own "
                             "provisioning model (Dynamic Workload Scheduler), not from Spot capacity")
        if self.topology and not (self.cluster.queue or self.flex_start):
            raise ValueError("--topology needs --queue: Kueue places the pods by topology, and without a "
                             "LocalQueue no Kueue sees the JobSet")
        if not _LABEL_KEY.fullmatch(self.topology_level) or len(self.topology_level) > 316:
            raise ValueError(f"--topology-level {self.topology_level!r} is not a node label key such as "
                             f"{DEFAULT_TOPOLOGY_LEVEL}")
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
        """Restarts of the whole job (Volcano maxRetry, JobSet failurePolicy.maxRestarts). Volcano
        counts every restart, a preemption as much as a crash. GKE can reclaim a Spot VM at any
        time, so a run of days can see many; a fixed budget of 3 would end it while the
        checkpoints make each restart cost at most checkpoint_every steps. (The JobSet does not
        count restarts after a disruption, but a reclaimed node is not always reported as one.)"""
        if self.max_job_retries is not None:
            return self.max_job_retries
        return max(self.max_restarts, SPOT_JOB_RETRIES) if self.cluster.spot else self.max_restarts

    def nproc(self) -> int:
        return self.procs_per_node or max(1, self.cluster.gpus)

    def step_samples(self, world_size: int) -> int:
        """Samples per optimizer step over all processes (the global batch)."""
        return self.batch_size * self.accum_freq * world_size

    def total_steps(self, samples: int, world_size: int) -> int:
        return self.steps or max(1, math.ceil(self.epochs * samples / self.step_samples(world_size)))

    def warmup(self, samples: int, world_size: int) -> int:
        if self.warmup_steps is not None:
            return self.warmup_steps
        return math.ceil(self.warmup_epochs * samples / self.step_samples(world_size))

    def recipe(self) -> dict:
        """The settings that decide the weights (not EXECUTION_FIELDS or LENGTH_FIELDS), as the identity of a
        run holds them: what a setting does not use is left out (rewrites without --augment laclip, the
        multi-text form of the plain loss), so that only a change that changes the run counts."""
        values = self.model_dump(mode="json", exclude=EXECUTION_FIELDS | LENGTH_FIELDS)
        if not (values["rewrites"] and values["augment"] == "laclip"):
            values.update(rewrites=None, augment="none", min_words=None)
        if values["loss"] != "multitext":
            values["multitext_form"] = None
        return values

    def to_arg(self) -> str:
        """Compact JSON for the container command. Every field, so that an image built with
        other defaults than the submitting CLI still runs exactly what was submitted."""
        return json.dumps(self.model_dump(mode="json"), separators=(",", ":"))


# Fields that must match to continue a run from its checkpoint (others may change).
RESUME_KEYS = ("model", "dataset", "loss", "texts_per_image", "text_probs")
# What does not decide what a run's checkpoints hold: where and how it runs, how often it logs and saves,
# who owns it. Every other field is its recipe (TrainConfig.recipe), part of the run's identity.
EXECUTION_FIELDS = frozenset({
    "run", "root", "preset", "owner", "workers", "checkpoint_every", "keep_last", "resume", "log_every",
    "data_wait_warn", "tensorboard", "lease_timeout_s", "eval_datasets", "eval_job", "cluster", "nodes",
    "procs_per_node", "max_restarts", "max_job_retries", "scheduler", "flex_start", "flex_start_max_run_s",
    "topology", "topology_level", "rdzv_port", "compile", "grad_checkpointing", "max_rewrite_mismatch",
})
# The run's length may change between starts (its schedule is re-planned, with a warning: laclip.train.main).
LENGTH_FIELDS = frozenset({"steps", "epochs", "warmup_epochs", "warmup_steps"})


# Paper recipes (the LaCLIP paper's training details). Batch sizes are per process: 8192 = 8 nodes x 8 GPUs x 128.
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
    values = {k: v for k, v in overrides.items() if v is not None}
    try:
        return TrainConfig(preset=name, **values)
    except ValidationError as exc:
        raise UsageError(explain(exc)) from None

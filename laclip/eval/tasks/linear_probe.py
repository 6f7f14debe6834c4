"""Linear probe: logistic regression on frozen features (laclip.eval.linear_probe computes it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from laclip.errors import DataError
from laclip.eval.tasks.base import LABELS, TaskRun
from laclip.eval.tasks.classification import Classification


class LinearProbeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    val_fraction: float = Field(0.2, gt=0, lt=1, description="held out of train when no val_split is set")
    # L2 strength lambda searched on a log grid, then refined around the best (as the CLIP paper does).
    reg_min: float = Field(1e-6, gt=0, allow_inf_nan=False)
    reg_max: float = Field(1e2, gt=0, allow_inf_nan=False)
    grid: int = Field(9, ge=2, le=1000)
    refine_steps: int = Field(4, ge=0, le=100)
    max_iter: int = Field(100, ge=10, le=100_000)

    @model_validator(mode="after")
    def _range(self) -> "LinearProbeOptions":
        if self.reg_min >= self.reg_max:
            raise ValueError(f"reg_min {self.reg_min:g} must be below reg_max {self.reg_max:g}")
        return self


class LinearProbe(Classification):
    name, result_name, title, short = "linear_probe", "linear_probe", "linear probe", "linear"
    aliases = ("linear", "lp")
    options = LinearProbeOptions
    identity_fields = ("linear_probe", "seed", "train_split", "val_split")
    reads_train = True
    metric_prefix = "lp_"  # CLIP_benchmark's names: lp_acc1, lp_acc5, lp_mean_per_class_recall
    paper_row = 1

    def unsupported(self, cfg, ds, from_suite: bool) -> str | None:
        # a suite's hub copy without a train split: the rest of the suite still runs
        if from_suite and ds.kind != "retrieval" and not ds.has_split(cfg.train_split):
            return f"it has no {cfg.train_split} split to fit the probe on"
        return super().unsupported(cfg, ds, from_suite)

    def evaluate(self, run: TaskRun) -> dict:
        from laclip.eval import linear_probe

        cfg, lp = run.cfg, run.cfg.linear_probe
        test = run.test()
        if not run.ds.has_split(cfg.train_split):
            raise DataError(f"linear probe needs a {cfg.train_split!r} split in {run.ds.url()}")
        train = run.split(cfg.train_split, True)
        val = run.split(cfg.val_split, True) if cfg.val_split else None
        metrics = linear_probe.evaluate(
            train.features, train.labels, test.features, test.labels, val.features if val else None,
            val.labels if val else None, reg_min=lp.reg_min, reg_max=lp.reg_max, grid=lp.grid,
            refine_steps=lp.refine_steps, max_iter=lp.max_iter, val_fraction=lp.val_fraction, seed=cfg.seed,
            device=str(run.lm.device), outcomes=run.outcomes)
        return {self.result_metric(k) if k in LABELS else k: v for k, v in metrics.items()}


SPEC = LinearProbe()

"""What an eval task is (TaskSpec) and what it is given to evaluate (TaskRun). No torch here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from laclip.errors import DataError

# metric -> (kind, per-observation values, groups or None, binary): what laclip.eval.stats resamples
Observations = dict
LABELS = {"acc1": "top-1", "acc5": "top-5", "mean_per_class_recall": "mean per-class recall"}


@dataclass
class TaskRun:
    """One task on one dataset, as the worker hands it to TaskSpec.evaluate: the config, the loaded
    model, the dataset, what `inputs` read, and `split(name, labelled)` giving a split's features
    (labelled: every sample must carry a .cls). `evaluate` fills `outcomes` (per-sample records,
    keyed like the test split's samples; `images` selects them when not every sample takes part)
    and `details` (recorded under the result's "laclip")."""

    spec: "TaskSpec"
    cfg: Any
    lm: Any
    ds: Any
    payload: dict
    split: Callable[[str, bool], Any]
    outcomes: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    def test(self):
        return self.split(self.cfg.test_split, self.spec.needs_labels)

    @property
    def where(self) -> str:
        return self.ds.url(self.cfg.test_split)


class TaskSpec:
    """One eval task: its names, options, identity, evaluation, metrics and per-sample outcomes."""

    name: str  # ours: --tasks, suite files, and EvalConfig.<name> when it has options
    result_name: str  # CLIP_benchmark's: the result file's `task` and its file name
    title: str  # the paper layout's row and the task's name in prose
    short: str  # its column in `eval report` and its metrics' prefix in `eval compare`
    aliases: tuple[str, ...] = ()  # what else --tasks accepts
    options: type | None = None  # a pydantic model, EvalConfig.<name> (`--set fewshot.episodes=200`)
    identity_fields: tuple[str, ...] = ()  # the EvalConfig fields that decide its numbers
    reads_train: bool = False  # reads the train split besides the test split
    needs_labels: bool = True  # a classification task: every test sample carries a .cls
    headline: str = "acc1"  # the metric a table shows, in the outcomes' names
    metric_prefix: str = ""  # CLIP_benchmark's prefix of the task's result metrics (lp_ for the probe)
    paper_row: int | None = None  # its row's place in the paper layout; None: no row
    outcome_keys: tuple[str, ...] = ()  # what its .outcomes.npz must hold besides `keys`
    per_sample: tuple[str, ...] = ()  # outcome arrays with one value per test sample

    # -- running it ---------------------------------------------------------------------------
    def unsupported(self, cfg, ds, from_suite: bool) -> str | None:
        """Why `ds` cannot run this task (then it is skipped with a warning), else None."""
        return "it is a retrieval dataset" if self.needs_labels and ds.kind == "retrieval" else None

    def inputs(self, cfg, ds) -> tuple[dict | None, dict]:
        """What the task reads from files, checked before a checkpoint is loaded: (its digests for the
        result identity, or None; what `evaluate` gets as `run.payload`)."""
        return None, {}

    def evaluate(self, run: TaskRun) -> dict:
        """Metrics in CLIP_benchmark's names; fills run.outcomes and run.details."""
        raise NotImplementedError

    # -- its metrics and outcomes --------------------------------------------------------------
    def result_metric(self, metric: str) -> str:
        return self.metric_prefix + metric

    @property
    def headline_result(self) -> str:
        """The headline metric as result files name it."""
        return self.result_metric(self.headline)

    def metric_label(self, metric: str | None) -> str:
        return self.short if metric is None else f"{self.short} {LABELS.get(metric, metric)}"

    def observations(self, o: dict) -> Observations:
        raise NotImplementedError

    def same_samples(self, a: dict, b: dict) -> str | None:
        """Why two results' outcomes cannot be paired beyond their keys (other labels, episodes), else None."""
        return None

    def check_outcomes(self, o: dict, where: str) -> None:
        """Raise DataError when `o` is not what this task writes (laclip.eval.outcomes.read)."""
        import numpy as np

        n = len(o["keys"])
        for key in self.outcome_keys:
            if key not in o:
                raise DataError(f"{where} lacks {key!r}, which {self.result_name} outcomes hold")
        for key, value in o.items():
            if value.dtype.kind not in "iufbUS":
                raise DataError(f"{where}: {key!r} holds {value.dtype} values")
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise DataError(f"{where}: {key!r} holds NaN or infinite values")
        for key in self.per_sample:
            if o[key].shape != (n,):
                raise DataError(f"{where}: {key!r} has shape {o[key].shape}, not one value for each of the "
                                f"{n} keys")


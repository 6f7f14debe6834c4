"""Few-shot N-way K-shot classification by weighted kNN (laclip.eval.fewshot computes it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from laclip.errors import DataError
from laclip.eval.tasks.base import Observations, TaskRun, TaskSpec


class FewShotOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ways: int = Field(5, ge=2, le=1000)
    shots: int = Field(5, ge=1, le=10_000)
    queries: int = Field(15, ge=1, le=10_000, description="query images per class in each episode")
    episodes: int = Field(600, ge=1, le=1_000_000)
    k: int = Field(5, ge=1, le=10_000, description="neighbours that vote (at most ways*shots)")
    temperature: float = Field(0.07, gt=0, le=100, allow_inf_nan=False, description="vote weight exp(cosine/T)")


class FewShot(TaskSpec):
    name, result_name, title, short = "fewshot", "fewshot_knn", "few-shot", "few-shot"
    aliases = ("knn",)
    options = FewShotOptions
    identity_fields = ("fewshot", "seed", "train_split")
    reads_train = True
    paper_row = 2
    outcome_keys = ("episode_acc", "episodes")

    def evaluate(self, run: TaskRun) -> dict:
        from laclip.eval import fewshot

        cfg, fs = run.cfg, run.cfg.fewshot
        test = run.test()
        has_train = run.ds.has_split(cfg.train_split)
        support = run.split(cfg.train_split, True) if has_train else None
        run.details["support_split"] = cfg.train_split if has_train else cfg.test_split
        return fewshot.evaluate(
            test.features, test.labels, support.features if support else None, support.labels if support else None,
            ways=fs.ways, shots=fs.shots, queries=fs.queries, episodes=fs.episodes, k=fs.k,
            temperature=fs.temperature, seed=cfg.seed, outcomes=run.outcomes)

    def observations(self, o: dict) -> Observations:
        import numpy as np

        return {"acc1": ("mean", o["episode_acc"].astype(np.float64), None, False)}

    def same_samples(self, a: dict, b: dict) -> str | None:
        if str(a["episodes"]) != str(b["episodes"]):
            return "their few-shot episodes differ (another seed, ways, shots or query count)"
        return None

    def check_outcomes(self, o: dict, where: str) -> None:
        super().check_outcomes(o, where)
        acc = o["episode_acc"]
        if acc.ndim != 1 or not len(acc) or acc.dtype.kind != "f" or not ((acc >= 0) & (acc <= 1)).all():
            raise DataError(f"{where}: 'episode_acc' is not one accuracy in [0, 1] per episode")


SPEC = FewShot()

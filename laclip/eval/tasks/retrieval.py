"""Image-text retrieval recall@K on captioned test images (laclip.eval.retrieval computes it)."""

from __future__ import annotations

from laclip.errors import DataError, NotFound
from laclip.eval.tasks.base import Observations, TaskRun, TaskSpec


class Retrieval(TaskSpec):
    name, result_name, title, short = "retrieval", "zeroshot_retrieval", "retrieval", "t2i R@1"
    identity_fields = ("recall_k",)
    needs_labels = False
    headline = "image_retrieval_recall@1"
    outcome_keys = ("t2i_rank", "t2i_image", "i2t_rank", "recall_k")
    per_sample = ("i2t_rank",)

    def unsupported(self, cfg, ds, from_suite: bool) -> str | None:
        try:
            captioned = ds.captioned(cfg.test_split)
        except (DataError, NotFound):
            return None  # cannot tell from the shards (cached features may stand in): evaluate says what it finds
        return None if captioned else f"its {cfg.test_split} split has no .txt captions"

    def evaluate(self, run: TaskRun) -> dict:
        from laclip.eval import retrieval

        test = run.test()
        return retrieval.evaluate(run.lm, test.features, test.captions, run.cfg.recall_k, where=run.where,
                                  outcomes=run.outcomes)

    def metric_label(self, metric: str | None) -> str:
        if metric is None:
            return self.short
        return f"{'t2i' if metric.startswith('image_') else 'i2t'} R@{metric.rsplit('@', 1)[-1]}"

    def observations(self, o: dict) -> Observations:
        import numpy as np

        out = {}
        for k in o["recall_k"].tolist():
            out[f"image_retrieval_recall@{k}"] = ("cluster_mean", (o["t2i_rank"] < k).astype(np.float64),
                                                  o["t2i_image"], False)
            out[f"text_retrieval_recall@{k}"] = ("mean", (o["i2t_rank"] < k).astype(np.float64), None, False)
        return out

    def same_samples(self, a: dict, b: dict) -> str | None:
        import numpy as np

        return None if np.array_equal(a["t2i_image"], b["t2i_image"]) else "their captions differ"

    def check_outcomes(self, o: dict, where: str) -> None:
        super().check_outcomes(o, where)
        images, texts = len(o["keys"]), o["t2i_rank"].shape
        if o["t2i_image"].shape != texts or len(texts) != 1 or o["recall_k"].ndim != 1:
            raise DataError(f"{where}: 't2i_rank' and 't2i_image' must hold one value per caption")
        for key, top in (("t2i_rank", images), ("t2i_image", images), ("i2t_rank", texts[0])):
            v = o[key]
            if v.dtype.kind not in "iu" or len(v) and not 0 <= v.min() <= v.max() < top:
                raise DataError(f"{where}: {key!r} holds values outside 0..{top - 1}")


SPEC = Retrieval()

"""Zero-shot classification: class names in prompt templates (laclip.eval.zeroshot computes it)."""

from __future__ import annotations

from laclip.errors import DataError
from laclip.eval.tasks.base import TaskRun
from laclip.eval.tasks.classification import Classification
from laclip.identity import digest


class ZeroShot(Classification):
    name, result_name, title, short = "zeroshot", "zeroshot_classification", "zero-shot", "zero-shot"
    aliases = ("zs",)
    paper_row = 0

    def inputs(self, cfg, ds) -> tuple[dict | None, dict]:
        """The class names and templates, read and checked before any checkpoint is loaded; their
        content enters the result identity."""
        names, templates = ds.classnames(cfg.classnames), ds.templates(cfg.templates)
        own = ds.classnames("auto") if cfg.classnames != "auto" and ds.has_file("classnames.txt") else None
        if own is not None and len(own) != len(names):
            raise DataError(f"--classnames {cfg.classnames} has {len(names)} names but {ds.url('classnames.txt')} "
                            f"lists {len(own)} classes")
        return {"classnames": digest(names), "templates": digest(templates)}, {"classnames": names,
                                                                                "templates": templates}

    def evaluate(self, run: TaskRun) -> dict:
        from laclip.eval import zeroshot

        test, names, templates = run.test(), run.payload["classnames"], run.payload["templates"]
        run.details.update(classes=len(names), templates=len(templates))
        return zeroshot.evaluate(run.lm, test.features, test.labels, names, templates, where=run.where,
                                 outcomes=run.outcomes)


SPEC = ZeroShot()

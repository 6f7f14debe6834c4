"""The eval tasks: one spec per task (laclip.eval.tasks.base.TaskSpec), one registry (TASKS).

A spec holds the task's names (ours for --tasks and suite files, CLIP_benchmark's for result files,
the tables'), its options (EvalConfig.<name>), the settings that enter its result identity, how it
evaluates, its metrics and its per-sample outcomes. Everything that names a task iterates TASKS:
the config, suites, the worker, result files, outcomes, `eval report` and its paper layout, `eval
compare`, the pipeline and `laclip plan`. A new task is a module here holding its spec, its entry
below, and its test. No torch here.
"""

from __future__ import annotations

from laclip.eval.tasks import fewshot, linear_probe, retrieval, zeroshot
from laclip.eval.tasks.base import TaskRun, TaskSpec  # noqa: F401  (the registry's types)

TASKS: tuple[TaskSpec, ...] = (zeroshot.SPEC, fewshot.SPEC, linear_probe.SPEC, retrieval.SPEC)

BY_NAME = {t.name: t for t in TASKS}
BY_RESULT = {t.result_name: t for t in TASKS}
# what --tasks accepts for each task: its name, CLIP_benchmark's and the aliases
ACCEPTED = {alias: t.name for t in TASKS for alias in (t.name, t.result_name, *t.aliases)}


def names() -> list[str]:
    return [t.name for t in TASKS]


def get(name: str) -> TaskSpec:
    """The spec of a task by our name (a config's, already checked)."""
    return BY_NAME[name]


def of_result(result_name: str) -> TaskSpec | None:
    """The spec of a result file's task (CLIP_benchmark's name), None for a task laclip does not run."""
    return BY_RESULT.get(result_name)


def canonical(name: str) -> str:
    """Our name of a task as a user writes it (ours, CLIP_benchmark's or an alias); ValueError if none."""
    found = ACCEPTED.get(name.strip())
    if found is None:
        raise ValueError(f"unknown task {name.strip()!r} (tasks: {', '.join(names())})")
    return found

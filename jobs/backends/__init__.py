"""The scheduler backends, one module each (laclip_jobs.backends.base says what a backend is), in one
registry: `laclip status`, `logs` and `cancel` read and delete every kind listed here without naming
one, `submit` creates what they render, and `submit train --scheduler` takes the names of those that
run the training AppDef. Local processes are the one backend outside this pure package: they run
(laclip_cli.local), they do not render."""

from __future__ import annotations

from laclip.errors import UsageError
from laclip.kube import Resource
from laclip_jobs.backends import job, jobset, trainjob, volcano
from laclip_jobs.backends.base import Backend

BACKENDS: tuple[Backend, ...] = (
    job.BACKEND,
    jobset.BACKEND,
    volcano.BACKEND,
    trainjob.BACKEND,
)
RESOURCES: tuple[Resource, ...] = tuple(b.resource for b in BACKENDS)
TRAIN: dict[str, Backend] = {b.name: b for b in BACKENDS if b.name}  # --scheduler: the first is the default


def for_object(obj: dict) -> Backend | None:
    """The backend of an object the API returned (by apiVersion and kind)."""
    return next((b for b in BACKENDS if b.makes(obj)), None)


def scheduler(name: str) -> Backend:
    """The training backend `--scheduler name`, or a UsageError naming the choices."""
    if name not in TRAIN:
        raise UsageError(f"unknown --scheduler {name!r}: choose {', '.join(TRAIN)}")
    return TRAIN[name]

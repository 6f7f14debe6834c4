"""The shape of a scheduler backend: one kind of object that runs laclip's pods on a cluster.

Modelled on TorchX's `Scheduler` (dryrun / schedule / describe / cancel / log_iter), split so that
this side stays pure (data in, data out; no API client):

    dryrun    render: a config in, the object out (the stage renderers and `render_train`)
    schedule  laclip.cluster.create(objects, RESOURCES): the kind, group and plural come from `resource`
    describe  `state(obj)` and `progress(obj)` read the object the API returns; what it made (a
              JobSet's Jobs, a TrainJob's JobSet, their pods) is found by owner reference, whatever
              the kind, and counts as its progress, not as objects of their own
    cancel    laclip.cluster.delete(resource, name) with foreground propagation: the owned objects go too
    log_iter  the pods of a run's stage by label; `index_keys` says which label numbers a pod

Each backend is one module of this package and one line of its registry (`__init__.py`).

Why not TorchX `Scheduler` subclasses: a TorchX scheduler owns an API client (schedule, describe,
cancel and log_iter call the cluster), so rendering would no longer be pure; it schedules AppDefs,
while four of laclip's stages are Indexed Jobs that no AppDef describes; its describe() answers an
AppState per role, with no room for Kueue's admission, ProvisioningRequests or the events that say
why a run waits; and it is registered through entry points. The training AppDef stays TorchX's
(`dist.ddp`), and its Volcano Job is TorchX's own scheduler's dry run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from laclip.kube import QUEUE_LABEL, Resource
DISRUPTION = "DisruptionTarget"  # the pod condition of an eviction, preemption or node shutdown
# TorchX's ddp names its role after the entry module (laclip.train.main): the replicated Job of a
# JobSet, the Volcano tasks <role>-<node>; part of every pod name.
ROLE = "main"


@dataclass
class ObjectState:
    kind: str  # Job, JobSet, VolcanoJob, TrainJob, Workload
    name: str
    state: str  # Running, Pending, Suspended, Succeeded, Failed, Terminating
    detail: str = ""


@dataclass
class Progress:
    """What one object says of its stage's progress: indexes (an Indexed Job) and its clock."""

    completions: int | None = None
    completed: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    started: str | None = None
    finished: str | None = None


@dataclass
class TrainRequest:
    """What every backend of the training run renders from (laclip_jobs.train builds it): the TorchX
    AppDef (the torchrun command), the run's names and labels, and the GKE patch of a pod spec."""

    cfg: Any  # laclip.train.config.TrainConfig
    app: Any  # the TorchX AppDef of one role
    nodes: int
    labels: dict[str, str]  # the top object's: laclip's labels, the Kueue queue when there is one
    template_labels: dict[str, str]  # the pods' (and child Jobs'): laclip's labels
    annotations: dict[str, str] | None  # the top object's (Kueue's ProvisioningRequest parameters)
    pod_annotations: dict[str, str] | None  # Kueue's topology request
    suspend: bool  # created suspended: Kueue admits it
    retries: int  # restarts of the whole gang
    patch_pod: Callable[[dict], None]  # the GKE patches of a pod spec, in place

    @property
    def role(self):
        return self.app.roles[0]


def meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def labels_of(obj: dict) -> dict:
    return meta(obj).get("labels") or {}


def condition(obj: dict, kind: str) -> dict | None:
    """The condition `kind` when its status is True."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return cond
    return None


def waiting(obj: dict) -> str:
    """Why a suspended object waits: Kueue's queue, else the flag itself."""
    queue = labels_of(obj).get(QUEUE_LABEL)
    return f"waiting for Kueue admission in LocalQueue {queue}" if queue else "suspended (spec.suspend=true)"


class Backend:
    """A scheduler target: the kind it creates and how to read it. Subclasses fill in the rest."""

    name: str = ""  # what --scheduler takes (train backends)
    resource: Resource
    kueue: bool = False  # Kueue admits it as one workload: --queue suspends it; --flex-start, --topology
    elastic: bool = False  # runs --nodes MIN:MAX (torchrun's elastic membership)
    index_keys: tuple[str, ...] = ()  # pod labels (or annotations) that number a pod: `laclip logs --index`
    twin: str = ""  # what `kubectl get` shows for a run of this kind [default: the kind's name]
    child_label: str = ""  # the label naming it on what it makes (owner references name it too)
    problem_states: tuple[str, ...] = ("Suspended", "Failed")  # states whose detail says why a stage waits
    help: str = ""  # one line for --scheduler's help (train backends)

    @property
    def kind(self) -> str:
        return self.resource.title.replace(" ", "") or self.resource.kind

    def makes(self, obj: dict) -> bool:
        return self.resource.makes(obj)

    def state(self, obj: dict) -> ObjectState:
        raise NotImplementedError

    def progress(self, obj: dict) -> Progress:
        """Its clock: created, and finished when it ended (the ending condition's time)."""
        done = condition(obj, "Completed") or condition(obj, "Complete") or condition(obj, "Failed")
        return Progress(started=meta(obj).get("creationTimestamp"),
                        finished=(done or {}).get("lastTransitionTime"))

    # -- the training run (backends that run the TorchX AppDef) ----------------------------------
    def render_train(self, req: TrainRequest) -> dict[str, Any]:
        raise NotImplementedError(f"{self.name} does not run the training AppDef")

    def longest_pod_name(self, run: str, nodes: int) -> str:
        """The longest pod name this backend derives from the run id for `nodes` nodes."""
        raise NotImplementedError

    def shown(self, pod_name: str) -> str:
        """A derived pod name as an error message shows it (random parts masked)."""
        return pod_name

    def check_train(self, cfg, lo: int, hi: int) -> None:
        """Refuse what this backend cannot run (a UsageError naming the way out)."""

    def pod_templates(self, obj: dict) -> list[dict[str, Any]]:
        """The pod templates of a rendered object, each as a standalone Pod (for the Kubernetes schema)."""
        raise NotImplementedError

"""Turn the Kubernetes objects of one run into a per-stage status a person can act on.

Pure functions over plain dicts (the JSON the API server returns), so they are tested
without a cluster and shared by `laclip status` and anything else that watches a run.
No kubernetes-client or torch imports here.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from laclip.kube import Resource
from laclip_jobs.backends import BACKENDS, for_object
from laclip_jobs.backends.base import ObjectState, condition, labels_of, meta
from laclip_jobs.backends.job import parse_indexes  # noqa: F401  (status readers import it from here)
from laclip_jobs.common import COMPONENT_LABEL, RUN_LABEL

# Kueue's Workloads, and the cluster autoscaler's ProvisioningRequests that Kueue makes for GKE's
# flex-start: read for why a run waits; an account without the right to list them skips them.
KUEUE = "install Kueue"
WORKLOADS = Resource("kueue.x-k8s.io/v1beta1", "Workload", "workloads", install=KUEUE, optional=True)
PROVISIONING = Resource("autoscaling.x-k8s.io/v1", "ProvisioningRequest", "provisioningrequests", install=KUEUE,
                        optional=True)
# Container waiting reasons that mean "this will not start by itself".
STUCK_REASONS = {
    "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CrashLoopBackOff",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
}
# Event reasons worth showing next to a pending or failing pod or job.
EVENT_REASONS = {
    "FailedScheduling", "Failed", "BackOff", "ErrImagePull", "ImagePullBackOff", "FailedCreate",
    "FailedMount", "FailedAttachVolume", "Evicted", "Preempted", "NotTriggerScaleUp", "BackoffLimitExceeded",
    "DeadlineExceeded", "FailedIndexes", "Pending", "QuotaReserved", "Admitted", "PodGroupPending", "Unschedulable",
    "FailedJobs", "FailJobSet", "RestartJobSet",
}


def format_indexes(indexes: Iterable[int]) -> str:
    """The inverse of parse_indexes: [0, 1, 2, 5] -> "0-2,5"."""
    out: list[str] = []
    run: list[int] = []
    for i in sorted(set(indexes)):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def of_run(objs: Iterable[dict], run: str) -> list[dict]:
    """Keep the objects labelled with this run (the server filters too; this is the guarantee)."""
    return [o for o in objs if labels_of(o).get(RUN_LABEL) == run]


def pod_index(pod: dict) -> int | None:
    """The index of a pod (a completion index, a node), by the labels any backend numbers its pods with."""
    found = meta(pod)
    for source in (found.get("labels") or {}, found.get("annotations") or {}):
        for key in dict.fromkeys(k for b in BACKENDS for k in b.index_keys):
            if str(source.get(key, "")).isdigit():
                return int(source[key])
    return None


@dataclass
class StageStatus:
    stage: str
    objects: list[ObjectState] = field(default_factory=list)
    pods: Counter = field(default_factory=Counter)  # phase -> count
    completions: int | None = None
    completed: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    # Why something is pending or failing: message -> the objects it is about, so that 500
    # pods stuck for the same reason make one line, not 500.
    problems: dict[str, list[str]] = field(default_factory=dict)
    started: dt.datetime | None = None
    finished: dt.datetime | None = None

    @property
    def state(self) -> str:
        states = {o.state for o in self.objects if o.kind != "Workload"}
        for s in ("Failed", "Running", "Pending", "Suspended", "Succeeded"):
            if s in states:
                return s
        return next(iter(states), "Unknown")

    def add_reason(self, text: str, subject: str = "") -> None:
        subjects = self.problems.setdefault(text, [])
        if subject not in subjects:
            subjects.append(subject)

    @property
    def reasons(self) -> list[str]:
        """One line per distinct problem, naming the object (or how many share it)."""
        lines = []
        for text, subjects in self.problems.items():
            named = [s for s in subjects if s]
            if len(named) > 1:
                kind = named[0].split(" ", 1)[0]
                first = ", ".join(n.split(" ", 1)[-1] for n in named[:2])
                lines.append(f"{len(named)} {kind}s ({first}{', ...' if len(named) > 2 else ''}): {text}")
            else:
                lines.append(f"{named[0]}: {text}" if named else text)
        return lines


@dataclass
class RunStatus:
    run: str
    stages: dict[str, StageStatus]


def admission_check_reasons(workload: dict) -> list[str]:
    """Why Kueue's admission checks (e.g. flex-start's ProvisioningRequest) hold a Workload back."""
    if condition(workload, "Admitted") or condition(workload, "Finished"):
        return []
    return [f"Kueue admission check {c.get('name')}: {c.get('state')}: {' '.join(c['message'].split())}"
            for c in (workload.get("status") or {}).get("admissionChecks") or []
            if c.get("state") != "Ready" and c.get("message")]


def provisioning_reason(request: dict) -> str | None:
    """The state of a ProvisioningRequest (autoscaling.x-k8s.io), as GKE's autoscaler reports it:
    failed, capacity revoked or booking expired, else accepted and waiting, else not accepted."""
    name = meta(request).get("name", "?")
    conditions = {c.get("type"): c for c in (request.get("status") or {}).get("conditions") or []}
    for kind, status in (("Failed", "True"), ("CapacityRevoked", "True"), ("BookingExpired", "True"),
                         ("Provisioned", "False"), ("Accepted", "False")):
        cond = conditions.get(kind)
        if cond and cond.get("status") == status:
            text = " ".join((cond.get("message") or cond.get("reason") or "").split())
            return f"ProvisioningRequest {name}: {kind}={status}" + (f": {text}" if text else "")
    if not conditions:
        return f"ProvisioningRequest {name}: not yet seen by the cluster autoscaler"
    return None


def workload_reason(workload: dict) -> str | None:
    """Why Kueue has not admitted a Workload yet (QuotaReserved False carries the message).
    A finished Workload waits for nothing (newer Kueue clears its admission when it finishes);
    a True QuotaReserved ("Quota reserved in ClusterQueue ...") is progress, not a reason."""
    if condition(workload, "Admitted") or condition(workload, "Finished"):
        return None
    conditions = (workload.get("status") or {}).get("conditions") or []
    for cond in sorted(conditions, key=lambda c: c.get("type") != "Evicted"):  # a preemption first
        explains = cond.get("status") == "True" if cond.get("type") == "Evicted" else cond.get("status") != "True"
        if cond.get("type") in ("QuotaReserved", "Admitted", "Evicted") and explains and cond.get("message"):
            return f"Kueue: {cond['message']}"
    queue = (workload.get("spec") or {}).get("queueName")
    return f"Kueue: waiting for admission in LocalQueue {queue}" if queue else "Kueue: not admitted yet"


def pod_reasons(pod: dict) -> list[str]:
    """Why a pod is not running: unschedulable condition, stuck containers, termination
    (without the pod's name, so that pods with the same problem group together)."""
    status = pod.get("status") or {}
    out = []
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            out.append(f"unschedulable: {cond.get('message') or cond.get('reason', '')}".rstrip(": "))
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in STUCK_REASONS:
            msg = waiting.get("message") or ""
            out.append(f"container {cs.get('name')}: {waiting['reason']}" + (f": {msg}" if msg else ""))
        term = (cs.get("state") or {}).get("terminated") or {}
        if term and term.get("exitCode"):
            out.append(f"container {cs.get('name')} exited {term['exitCode']} ({term.get('reason', '')})")
    if status.get("phase") == "Failed" and status.get("reason"):
        out.append(f"failed: {status['reason']} {status.get('message', '')}".rstrip())
    return out


def event_reasons(events: Iterable[dict], names: set[str]) -> list[tuple[str, str]]:
    """(subject, message) of warning events about our pods and jobs, oldest first."""
    picked = []
    for ev in events:
        involved = ev.get("involvedObject") or ev.get("regarding") or {}
        if involved.get("name") not in names:
            continue
        if ev.get("type") != "Warning" and ev.get("reason") not in EVENT_REASONS:
            continue
        when = ev.get("lastTimestamp") or ev.get("eventTime") or ev.get("firstTimestamp") or ""
        picked.append((str(when), f"{involved.get('kind', '')} {involved.get('name')}".strip(),
                       f"{ev.get('reason')}: {(ev.get('message') or ev.get('note') or '').strip()}"))
    return [(subject, text) for _, subject, text in sorted(picked)]


def _key(api_version: str | None, kind: str | None, name: str | None) -> tuple:
    return (api_version or "").rpartition("/")[0], kind, name


def makers(obj: dict) -> set[tuple]:
    """The objects that made `obj`, by owner reference, or by the label a JobSet puts on its Jobs."""
    found = {_key(r.get("apiVersion"), r.get("kind"), r.get("name")) for r in meta(obj).get("ownerReferences") or []}
    for backend in BACKENDS:
        if backend.child_label and labels_of(obj).get(backend.child_label):
            found.add(_key(backend.resource.api_version, backend.resource.kind, labels_of(obj)[backend.child_label]))
    return found


def split_made(objects: list[dict]) -> tuple[list[dict], dict[str, str]]:
    """(the objects none of the others made, {name of a made object: name of the top object that made
    it}): a JobSet's Jobs and a TrainJob's JobSet are their maker's progress, not objects of their own,
    and deleting the maker deletes them."""
    keyed = {_key(o.get("apiVersion"), o.get("kind"), meta(o).get("name")): o for o in objects}
    parent = {k: next(iter(makers(o) & set(keyed)), None) for k, o in keyed.items()}
    top, made = [], {}
    for k, o in keyed.items():
        root, seen = k, set()
        while parent.get(root) is not None and root not in seen:
            seen.add(root)
            root = parent[root]
        (top.append(o) if root == k else made.setdefault(k[2], root[2]))
    return top, made


def summarise(run: str, objects: list[dict], pods: list[dict] = (), events: list[dict] = (),
              workloads: list[dict] | None = None, provisioning: list[dict] | None = None,
              order: Iterable[str] = ()) -> RunStatus:
    """One StageStatus per stage that has objects, from whatever the cluster returned: `objects` of
    any backend's kind, in `order` of the stages' components (the others after them)."""
    top, made = split_made(of_run(objects, run))
    pods = of_run(pods, run)
    stages: dict[str, StageStatus] = {}
    owners: dict[str, StageStatus] = {}  # object name -> stage, for events and workloads
    for obj in top:
        backend = for_object(obj)
        if backend is None:
            continue
        name = labels_of(obj).get(COMPONENT_LABEL, "unknown")
        st = stages.setdefault(name, StageStatus(name))
        state = backend.state(obj)
        st.objects.append(state)
        owners[meta(obj).get("name")] = st
        prog = backend.progress(obj)
        if prog.completions is not None:
            # Several Jobs in one stage (an eval Job per checkpoint): each numbers its completions
            # from 0, so each is shifted past the ones before it, else their indexes would merge.
            base = st.completions or 0
            st.completions = base + prog.completions
            st.completed += [base + i for i in prog.completed]
            st.failed += [base + i for i in prog.failed]
        _times(st, prog.started, prog.finished)
        if state.state in backend.problem_states:
            st.add_reason(state.detail, f"{state.kind} {state.name}")
    for child, root in made.items():
        if root in owners:
            owners[child] = owners[root]
    waiting: dict[str, StageStatus] = {}  # Workloads not admitted yet -> stage, for their ProvisioningRequests
    for wl in workloads or []:
        owner = next((r.get("name") for r in meta(wl).get("ownerReferences") or [] if r.get("name") in owners), None)
        if owner:
            why = workload_reason(wl)
            owners[owner].objects.append(ObjectState("Workload", meta(wl).get("name", "?"),
                                                     "Pending" if why else "Admitted", why or ""))
            for text in ([why] if why else []) + admission_check_reasons(wl):
                owners[owner].add_reason(text)
            if why:
                waiting[meta(wl).get("name")] = owners[owner]
    for request in provisioning or []:
        wl = next((r.get("name") for r in meta(request).get("ownerReferences") or [] if r.get("name") in waiting),
                  None)
        why = provisioning_reason(request) if wl else None
        if why:
            waiting[wl].add_reason(why)
    pod_stage: dict[str, StageStatus] = {}
    for pod in pods:
        name = labels_of(pod).get(COMPONENT_LABEL, "unknown")
        st = stages.setdefault(name, StageStatus(name))
        pod_stage[meta(pod).get("name")] = st
        phase = ("Terminating" if meta(pod).get("deletionTimestamp")
                 else (pod.get("status") or {}).get("phase", "Unknown"))
        st.pods[phase] += 1
        if phase in ("Pending", "Failed"):
            for text in pod_reasons(pod):
                st.add_reason(text, f"pod {meta(pod).get('name')}")
    by_name = {**owners, **pod_stage}
    settled = {meta(p).get("name") for p in pods if (p.get("status") or {}).get("phase") in ("Running", "Succeeded")}
    for ev in events:
        involved = ev.get("involvedObject") or ev.get("regarding") or {}
        st = by_name.get(involved.get("name"))
        if st is None or st.state == "Succeeded" or involved.get("name") in settled:
            continue  # a pod that runs now got past whatever its old events complained about
        for subject, text in event_reasons([ev], set(by_name)):
            st.add_reason(text, subject.replace("Pod ", "pod ", 1))
    for st in stages.values():
        st.completed, st.failed = sorted(set(st.completed)), sorted(set(st.failed))
    ordered = {s: stages.pop(s) for s in order if s in stages}
    ordered.update(stages)
    return RunStatus(run, ordered)


def _times(st: StageStatus, start: str | None, end: str | None) -> None:
    t0, t1 = parse_time(start), parse_time(end)
    if t0 and (st.started is None or t0 < st.started):
        st.started = t0
    if t1 and (st.finished is None or t1 > st.finished):
        st.finished = t1


def rate_and_eta(done: int, total: int | None, started: dt.datetime | None,
                 now: dt.datetime | None = None) -> tuple[float | None, dt.timedelta | None]:
    """Items per hour since the start, and the time left at that rate (None when unknown)."""
    if not started or done <= 0:
        return None, None
    now = now or dt.datetime.now(dt.timezone.utc)
    hours = max((now - started).total_seconds(), 1.0) / 3600
    rate = done / hours
    if total is None or total <= done:
        return rate, None if total is None else dt.timedelta(0)
    return rate, dt.timedelta(hours=(total - done) / rate)

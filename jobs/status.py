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

from laclip_jobs.common import COMPONENT_LABEL, QUEUE_LABEL, RUN_LABEL

STAGES = ("rewrite-import", "rewrite", "train", "eval")
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"  # label (1.28+) and annotation on Indexed Job pods
VOLCANO_INDEX = "volcano.sh/task-index"
TORCHX_REPLICA = "torchx.pytorch.org/replica-id"  # train pods rendered by TorchX: the node index
JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"  # on the Jobs (and pods) a JobSet creates
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


def parse_indexes(text: str | None) -> list[int]:
    """`completedIndexes` / `failedIndexes` ("0-2,5") as a sorted list of ints."""
    found: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        found.update(range(int(lo), int(hi or lo) + 1))
    return sorted(found)


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


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def _labels(obj: dict) -> dict:
    return _meta(obj).get("labels") or {}


def of_run(objs: Iterable[dict], run: str) -> list[dict]:
    """Keep the objects labelled with this run (the server filters too; this is the guarantee)."""
    return [o for o in objs if _labels(o).get(RUN_LABEL) == run]


def pod_index(pod: dict) -> int | None:
    meta = _meta(pod)
    for source in (meta.get("labels") or {}, meta.get("annotations") or {}):
        for key in (INDEX_LABEL, TORCHX_REPLICA, VOLCANO_INDEX):
            if str(source.get(key, "")).isdigit():
                return int(source[key])
    return None


@dataclass
class ObjectState:
    kind: str  # Job, VolcanoJob, Workload
    name: str
    state: str  # Running, Pending, Suspended, Succeeded, Failed, ...
    detail: str = ""


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


def _condition(obj: dict, kind: str) -> dict | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return cond
    return None


def job_state(job: dict) -> ObjectState:
    """A batch/v1 Job: suspended (Kueue), running, or finished from its conditions."""
    spec, status = job.get("spec") or {}, job.get("status") or {}
    name = _meta(job).get("name", "?")
    for kind in ("Failed", "Complete"):
        cond = _condition(job, kind)
        if cond:
            state = "Succeeded" if kind == "Complete" else "Failed"
            return ObjectState("Job", name, state, cond.get("message") or cond.get("reason") or "")
    if _meta(job).get("deletionTimestamp"):
        return ObjectState("Job", name, "Terminating", "deletion in progress")
    if spec.get("suspend"):
        queue = _labels(job).get(QUEUE_LABEL)
        why = f"waiting for Kueue admission in LocalQueue {queue}" if queue else "suspended (spec.suspend=true)"
        return ObjectState("Job", name, "Suspended", why)
    active, ready = status.get("active", 0), status.get("ready", 0)
    if active and ready:
        return ObjectState("Job", name, "Running", f"{ready} of {active} pods ready")
    return ObjectState("Job", name, "Pending" if active or not status.get("startTime") else "Running",
                       f"{active} pods active" if active else "no pod running yet")


def volcano_state(vjob: dict) -> ObjectState:
    """A batch.volcano.sh Job (what TorchX renders for train): phase from status.state."""
    state = ((vjob.get("status") or {}).get("state") or {})
    phase = state.get("phase") or "Pending"
    mapped = {"Completed": "Succeeded", "Failed": "Failed", "Aborted": "Failed", "Terminated": "Failed",
              "Running": "Running", "Restarting": "Running", "Completing": "Running",
              "Aborting": "Terminating", "Terminating": "Terminating"}.get(phase, "Pending")
    detail = state.get("message") or state.get("reason") or f"Volcano phase {phase}"
    return ObjectState("VolcanoJob", _meta(vjob).get("name", "?"), mapped, detail)


def jobset_of(job: dict) -> str | None:
    """The JobSet that created this Job, if one did (its label, else its owner reference)."""
    name = _labels(job).get(JOBSET_NAME_LABEL)
    owner = next((r.get("name") for r in _meta(job).get("ownerReferences") or [] if r.get("kind") == "JobSet"), None)
    return name or owner


def jobset_state(js: dict) -> ObjectState:
    """A jobset.x-k8s.io JobSet: finished, suspended (Kueue), or how many of its Jobs are ready;
    with the gang restarts it has made (a Spot reclaim is one that maxRestarts does not count)."""
    spec, status = js.get("spec") or {}, js.get("status") or {}
    name = _meta(js).get("name", "?")
    restarts, counted = int(status.get("restarts") or 0), int(status.get("restartsCountTowardsMax") or 0)
    limit = (spec.get("failurePolicy") or {}).get("maxRestarts", 0)
    again = f"; restarts: {restarts} ({counted} of at most {limit} counted)" if restarts else ""
    for kind in ("Failed", "Completed"):
        cond = _condition(js, kind)
        if cond:
            detail = cond.get("message") or cond.get("reason") or ""
            return ObjectState("JobSet", name, "Succeeded" if kind == "Completed" else "Failed", detail + again)
    if _meta(js).get("deletionTimestamp"):
        return ObjectState("JobSet", name, "Terminating", "deletion in progress")
    if spec.get("suspend"):
        queue = _labels(js).get(QUEUE_LABEL)
        why = f"waiting for Kueue admission in LocalQueue {queue}" if queue else "suspended (spec.suspend=true)"
        return ObjectState("JobSet", name, "Suspended", why + again)
    total = sum(int(r.get("replicas") or 1) for r in spec.get("replicatedJobs") or [])
    jobs = status.get("replicatedJobsStatus") or []
    ready = sum(int(r.get("ready") or 0) + int(r.get("succeeded") or 0) for r in jobs)
    active = sum(int(r.get("active") or 0) for r in jobs)
    state = "Running" if total and ready >= total else "Pending"
    detail = f"{ready} of {total} job(s) ready" + (f", {active} active" if active and ready < total else "")
    return ObjectState("JobSet", name, state, detail + again)


def admission_check_reasons(workload: dict) -> list[str]:
    """Why Kueue's admission checks (e.g. flex-start's ProvisioningRequest) hold a Workload back."""
    if _condition(workload, "Admitted") or _condition(workload, "Finished"):
        return []
    return [f"Kueue admission check {c.get('name')}: {c.get('state')}: {' '.join(c['message'].split())}"
            for c in (workload.get("status") or {}).get("admissionChecks") or []
            if c.get("state") != "Ready" and c.get("message")]


def provisioning_reason(request: dict) -> str | None:
    """The state of a ProvisioningRequest (autoscaling.x-k8s.io), as GKE's autoscaler reports it:
    failed, capacity revoked or booking expired, else accepted and waiting, else not accepted."""
    name = _meta(request).get("name", "?")
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
    if _condition(workload, "Admitted") or _condition(workload, "Finished"):
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


def summarise(run: str, jobs: list[dict], vjobs: list[dict], pods: list[dict],
              events: list[dict], workloads: list[dict] | None = None, jobsets: list[dict] | None = None,
              provisioning: list[dict] | None = None) -> RunStatus:
    """One StageStatus per stage that has objects, from whatever the cluster returned."""
    jobs, vjobs, pods, jsets = of_run(jobs, run), of_run(vjobs, run), of_run(pods, run), of_run(jobsets or [], run)
    stages: dict[str, StageStatus] = {}

    def stage_of(obj: dict) -> StageStatus:
        name = _labels(obj).get(COMPONENT_LABEL, "unknown")
        return stages.setdefault(name, StageStatus(name))

    owners: dict[str, StageStatus] = {}  # object name -> stage, for events and workloads
    for js in jsets:
        st = stage_of(js)
        st.objects.append(jobset_state(js))
        owners[_meta(js).get("name")] = st
        _times(st, _meta(js).get("creationTimestamp"), None)
        done = _condition(js, "Completed") or _condition(js, "Failed")
        if done:
            _times(st, None, done.get("lastTransitionTime"))
        if st.objects[-1].state in ("Suspended", "Failed"):
            st.add_reason(st.objects[-1].detail, f"JobSet {st.objects[-1].name}")
    children = {_meta(js).get("name") for js in jsets}
    for job in [j for j in jobs if jobset_of(j) in children]:  # a JobSet's Jobs: its progress, not stages of their own
        owners[_meta(job).get("name")] = owners[jobset_of(job)]
    jobs = [j for j in jobs if jobset_of(j) not in children]
    for job in jobs:
        st = stage_of(job)
        st.objects.append(job_state(job))
        owners[_meta(job).get("name")] = st
        spec, status = job.get("spec") or {}, job.get("status") or {}
        # Several Jobs in one stage (an eval Job per checkpoint): each numbers its completions
        # from 0, so each is shifted past the ones before it, else their indexes would merge.
        base = st.completions or 0
        st.completions = base + int(spec.get("completions") or spec.get("parallelism") or 1)
        if spec.get("completionMode") == "Indexed":
            st.completed += [base + i for i in parse_indexes(status.get("completedIndexes"))]
            st.failed += [base + i for i in parse_indexes(status.get("failedIndexes"))]
        else:
            st.completed += list(range(base, base + int(status.get("succeeded") or 0)))
        failed = _condition(job, "Failed")  # a failed Job has no completionTime: it ended then
        _times(st, status.get("startTime"), status.get("completionTime") or (failed or {}).get("lastTransitionTime"))
        if st.objects[-1].state in ("Suspended", "Failed"):
            st.add_reason(st.objects[-1].detail, f"Job {st.objects[-1].name}")
    for vjob in vjobs:
        st = stage_of(vjob)
        st.objects.append(volcano_state(vjob))
        owners[_meta(vjob).get("name")] = st
        state = (vjob.get("status") or {}).get("state") or {}
        _times(st, _meta(vjob).get("creationTimestamp"), None)
        if st.objects[-1].state in ("Succeeded", "Failed"):
            _times(st, None, state.get("lastTransitionTime"))
        if st.objects[-1].state in ("Pending", "Failed"):
            st.add_reason(st.objects[-1].detail, f"VolcanoJob {st.objects[-1].name}")
    waiting: dict[str, StageStatus] = {}  # Workloads not admitted yet -> stage, for their ProvisioningRequests
    for wl in workloads or []:
        owner = next((r.get("name") for r in _meta(wl).get("ownerReferences") or [] if r.get("name") in owners), None)
        if owner:
            why = workload_reason(wl)
            owners[owner].objects.append(ObjectState("Workload", _meta(wl).get("name", "?"),
                                                     "Pending" if why else "Admitted", why or ""))
            for text in ([why] if why else []) + admission_check_reasons(wl):
                owners[owner].add_reason(text)
            if why:
                waiting[_meta(wl).get("name")] = owners[owner]
    for request in provisioning or []:
        wl = next((r.get("name") for r in _meta(request).get("ownerReferences") or [] if r.get("name") in waiting),
                  None)
        why = provisioning_reason(request) if wl else None
        if why:
            waiting[wl].add_reason(why)
    pod_stage: dict[str, StageStatus] = {}
    for pod in pods:
        st = stage_of(pod)
        pod_stage[_meta(pod).get("name")] = st
        phase = ("Terminating" if _meta(pod).get("deletionTimestamp")
                 else (pod.get("status") or {}).get("phase", "Unknown"))
        st.pods[phase] += 1
        if phase in ("Pending", "Failed"):
            for text in pod_reasons(pod):
                st.add_reason(text, f"pod {_meta(pod).get('name')}")
    by_name = {**owners, **pod_stage}
    settled = {_meta(p).get("name") for p in pods if (p.get("status") or {}).get("phase") in ("Running", "Succeeded")}
    for ev in events:
        involved = ev.get("involvedObject") or ev.get("regarding") or {}
        st = by_name.get(involved.get("name"))
        if st is None or st.state == "Succeeded" or involved.get("name") in settled:
            continue  # a pod that runs now got past whatever its old events complained about
        for subject, text in event_reasons([ev], set(by_name)):
            st.add_reason(text, subject.replace("Pod ", "pod ", 1))
    for st in stages.values():
        st.completed, st.failed = sorted(set(st.completed)), sorted(set(st.failed))
    ordered = {s: stages.pop(s) for s in STAGES if s in stages}
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

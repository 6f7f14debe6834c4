"""`laclip status [RUN]`, `laclip logs RUN --stage S`, `laclip cancel RUN`.

Each command prints its plain-kubectl twin first: everything laclip shows, kubectl shows
too, because every object carries the `laclip.dev/run` label.
"""

from __future__ import annotations

import datetime as dt
from typing import Optional

import typer
from rich.table import Table

from laclip import layout
from laclip.errors import LaclipError, UsageError
from laclip_cli.console import err, out, styled
from laclip_cli.stages import COMPONENTS
from laclip_cli.state import state

NamespaceOpt = typer.Option(None, "--namespace", "-n", envvar="LACLIP_NAMESPACE", show_default=False,
                            help="Namespace the runs live in [default: laclip].")
ContextOpt = typer.Option(None, "--context", help="kubeconfig context [default: the current one].")


def _ns(namespace: str | None) -> str:
    # Resolved here, not at import: laclip.config pulls in pydantic, and `laclip --help` stays light.
    from laclip.config import DEFAULT_NAMESPACE

    return namespace or DEFAULT_NAMESPACE


def _cluster(namespace: str, context: str | None):
    from laclip.cluster import Cluster, connect

    return Cluster(connect(context), namespace)


def _twin(command: str) -> None:
    out.print(styled((f"kubectl: {command}", "dim")), soft_wrap=True)


def _job_kinds(cluster) -> str:
    """The kinds a kubectl twin names: every backend's that the cluster serves (kubectl rejects a kind
    whose CRD the cluster lacks)."""
    from laclip_jobs.backends import RESOURCES

    return ",".join(r.kubectl for r in RESOURCES if cluster.serves(r))


def _check_stage(stage: str) -> None:
    if stage not in COMPONENTS:
        raise UsageError(f"unknown stage {stage!r}: use one of {', '.join(COMPONENTS)}")


def _selector(run: str) -> str:
    from laclip_jobs.common import RUN_LABEL, check_label_value

    return f"{RUN_LABEL}={check_label_value(run, 'run id')}"


def _age(when: dt.datetime | None, now: dt.datetime) -> str:
    if when is None:
        return "-"
    return _duration((now - when).total_seconds())


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    d, rem = divmod(seconds, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    return f"{d}d{h}h" if d else f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def status(
    run: Optional[str] = typer.Argument(None, help="Run id; without it, list the runs in the namespace."),
    namespace: Optional[str] = NamespaceOpt,
    context: Optional[str] = ContextOpt,
    store_progress: bool = typer.Option(True, "--store/--no-store", help="Also read progress from the store."),
    watch: Optional[float] = typer.Option(None, "--watch", "-w", min=0.1, max=86400,
                                          help="Refresh every N seconds until every stage has finished."),
    as_json: bool = typer.Option(False, "--json", help="Print the per-stage summary as JSON (for scripts and CI)."),
) -> None:
    """Per stage: objects, pods by phase, indexes done and failed, store progress, ETA, and why anything waits."""
    namespace = _ns(namespace)
    if run is None:
        return _list_runs(namespace, context)
    import time

    _selector(run)  # a bad run id is a usage error before any network call
    cluster = _cluster(namespace, context)
    store = _open_store() if store_progress else None
    if as_json:
        return _print_json(cluster, run, store)
    shown = False
    while True:
        try:
            summary = _show_run(cluster, run, namespace, store)
        except NoObjects:
            if not shown:
                raise
            # watched objects vanished: `laclip cancel` or the TTL removed them; not an error
            out.print(f"run {run}: its jobs and pods are gone from namespace {namespace} (cancelled, or "
                      "removed after their TTL); outputs in the store are kept")
            return
        shown = True
        if watch is None or all(st.state in ("Succeeded", "Failed") for st in summary.stages.values()):
            return
        time.sleep(watch)
        out.rule()


class NoObjects(LaclipError):
    """The run has no Jobs or pods (never submitted here, cancelled, or past its TTL)."""


class Found:
    """A run's objects as the cluster returned them: every backend's kind, and its pods, filtered to the run."""

    def __init__(self, cluster, run: str):
        from laclip_jobs.backends import BACKENDS, for_object
        from laclip_jobs.status import PROVISIONING, WORKLOADS, of_run, split_made

        selector = _selector(run)
        self.objects = [o for b in BACKENDS for o in of_run(cluster.objects(b.resource, selector), run)]
        self.pods = of_run(cluster.pods(selector), run)
        if not (self.objects or self.pods):
            raise NoObjects(f"run {run!r} has no jobs or pods in namespace {cluster.namespace!r} "
                            f"(finished jobs are removed after their TTL); `laclip status` lists the runs there")
        self.owners = split_made(self.objects)[0]  # what laclip created (a JobSet's own Jobs are its progress)
        self.kinds = [b for b in BACKENDS if any(b.makes(o) for o in self.owners)]
        queued = any(for_object(o).kueue for o in self.objects)  # what Kueue admits (not a Volcano Job)
        self.workloads = cluster.objects(WORKLOADS) if queued else []
        # GKE's flex-start: Kueue asks the cluster autoscaler for the nodes of a Workload it holds back
        checks = any((w.get("status") or {}).get("admissionChecks") for w in self.workloads)
        self.provisioning = cluster.objects(PROVISIONING) if checks else []
        self.events = cluster.events()

    def summary(self, run: str):
        from laclip_jobs.status import summarise

        return summarise(run, self.objects, self.pods, self.events, self.workloads, self.provisioning,
                         order=COMPONENTS)


def _print_json(cluster, run: str, store) -> None:
    """The summary and the store's progress per stage, as one JSON document."""
    import dataclasses
    import json

    from laclip_jobs.progress import store_progress

    found = Found(cluster, run)
    summary = found.summary(run)
    doc = {"run": run, "stages": {}}
    for name, st in summary.stages.items():
        entry = dataclasses.asdict(st)
        entry.update(state=st.state, reasons=st.reasons, pods=dict(st.pods))
        entry.pop("problems")
        owners = [o for o in found.owners if _label(o, "app.kubernetes.io/component") == name]
        elsewhere = _written_elsewhere(owners, store)
        if elsewhere:
            entry["store"] = {"error": _elsewhere_note(elsewhere)}
        elif store is not None and owners:
            try:
                entry["store"] = dataclasses.asdict(store_progress(
                    store, name, run, _first(owners, "laclip.dev/dataset"),
                    _first(owners, "laclip.dev/rewrite-id", "annotations"), _shards(owners)))
            except LaclipError as exc:
                entry["store"] = {"error": str(exc)}
        doc["stages"][name] = entry
    out.out(json.dumps(doc, indent=2, default=str), highlight=False)


def _show_run(cluster, run: str, namespace: str, store):
    selector = _selector(run)
    _twin(f"kubectl get jobs,pods -n {namespace} -l {selector}")
    found = Found(cluster, run)
    summary = found.summary(run)
    now = dt.datetime.now(dt.timezone.utc)
    for st in summary.stages.values():
        owners = [o for o in found.owners if _label(o, "app.kubernetes.io/component") == st.stage]
        dataset = _first(owners, "laclip.dev/dataset")
        rewrite_id = _first(owners, "laclip.dev/rewrite-id", "annotations")
        elsewhere = _written_elsewhere(owners, store)
        _print_stage(run, st, dataset, None if elsewhere else store, now, rewrite_id, _shards(owners))
        if elsewhere:
            out.print(styled("  ", ("store:", "yellow"), " ", _elsewhere_note(elsewhere)), soft_wrap=True)
    for backend in found.kinds:
        if backend.resource.kubectl != "jobs":  # the first twin shows Jobs
            _twin(f"kubectl get {backend.twin or backend.resource.kubectl} -n {namespace} -l {selector}")
    if any(o.kind == "Workload" and o.state != "Admitted" for st in summary.stages.values() for o in st.objects):
        _twin(f"kubectl get workloads.kueue.x-k8s.io -n {namespace}")  # Kueue names them after their job
        if found.provisioning:
            _twin(f"kubectl get provisioningrequests.autoscaling.x-k8s.io -n {namespace}")
    _twin(f"kubectl get events -n {namespace} --field-selector type=Warning --sort-by=.lastTimestamp")
    return summary


def _label(obj: dict, key: str) -> str | None:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(key)


def _first(owners: list[dict], key: str, where: str = "labels") -> str | None:
    """The first non-empty label (or annotation) `key` among a stage's Jobs."""
    return next((v for o in owners if (v := ((o.get("metadata") or {}).get(where) or {}).get(key))), None)


def _written_elsewhere(owners: list[dict], store) -> str | None:
    """The root a rewrite Job writes to (its `laclip.dev/output` annotation), when that is not
    the store laclip reads here: its progress there would read as 0 shards."""
    output = _first(owners, "laclip.dev/output", "annotations")
    root = layout.root_of_rewrite_url(output) if output else None
    if store is None or root is None:
        return None
    here = store.url.rstrip("/")
    # Only a gs:// side is compared: a local folder may be written as a path or as a file: URL.
    return root if root != here and "gs://" in (root[:5], here[:5]) else None


def _elsewhere_note(root: str) -> str:
    return (f"this run writes to {root}, not to the store read here; for its progress, "
            f"export LACLIP_ROOT={root} (or run `laclip --root {root} status ...`)")


def _shards(owners: list[dict]) -> int | None:
    """The shards a rewrite Job covers (its `laclip.dev/shards` annotation; `--num-shards` may
    make it fewer than the dataset has)."""
    value = str(_first(owners, "laclip.dev/shards", "annotations") or "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def _open_store():
    try:
        return state.store()
    except LaclipError as exc:
        err.print(styled(("store progress unavailable:", "yellow"), " ", str(exc)), soft_wrap=True)
        return None


def _print_stage(run: str, st, dataset: str | None, store, now: dt.datetime, rewrite_id: str | None,
                 shards: int | None = None) -> None:
    from laclip_jobs.progress import store_progress
    from laclip_jobs.status import format_indexes, rate_and_eta

    table = Table(title=f"{st.stage}: {st.state}", show_header=False, title_justify="left", box=None)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")  # long paths and messages wrap whole, never cut with "..."
    for obj in st.objects:
        table.add_row(obj.kind, styled(obj.name, "  ", (obj.state, "bold"), "  ", obj.detail))
    table.add_row("pods", ", ".join(f"{n} {phase}" for phase, n in sorted(st.pods.items())) or "none")
    if st.completions:
        table.add_row("indexes", f"{len(st.completed)} of {st.completions} completed"
                      + (f"; failed: {format_indexes(st.failed)}" if st.failed else ""))
    done, total, unit = len(st.completed), st.completions, "indexes"
    if store is not None:
        try:
            prog = store_progress(store, st.stage, run, dataset, rewrite_id, shards)
        except LaclipError as exc:
            prog = None
            table.add_row("store", styled((str(exc), "yellow")))
        if prog and prog.shards_done is not None:
            table.add_row("store", f"{prog.shards_done} of {prog.shards_total or '?'} shards rewritten "
                          f"({store.url_of(layout.rewrite_folder(dataset, rewrite_id or run))}/)")
            done, total, unit = prog.shards_done, prog.shards_total or total, "shards"
        if prog and st.stage == "train":
            of = f" of {prog.total_steps:,}" if prog.total_steps else ""
            table.add_row("checkpoint", f"step {prog.last_step:,}{of} ({prog.checkpoints} kept)"
                          if prog.last_step is not None else "none yet")
            done, total, unit = prog.last_step or 0, prog.total_steps, "steps"
        if prog and prog.eval_results:
            table.add_row("eval results", f"{len(prog.eval_results)}: " + ", ".join(prog.eval_results[:4])
                          + (" ..." if len(prog.eval_results) > 4 else ""))
    end = st.finished if st.state in ("Succeeded", "Failed") and st.finished else now
    table.add_row("elapsed", _age(st.started, end))
    rate, eta = rate_and_eta(done, total, st.started, end)
    if rate is not None:
        table.add_row("throughput", f"{rate:,.1f} {unit}/hour"
                      + (f", ETA {_duration(eta.total_seconds())}"
                         if eta is not None and st.state not in ("Succeeded", "Failed") else ""))
    out.print(table)
    for reason in st.reasons[-8:]:  # full lines, not table cells: messages are long and get copied
        out.print(styled("  ", ("why:", "yellow"), " ", reason), soft_wrap=True)


def _list_runs(namespace: str, context: str | None) -> None:
    from laclip_jobs.backends import BACKENDS, for_object
    from laclip_jobs.common import COMPONENT_LABEL, RUN_LABEL
    from laclip_jobs.status import parse_time, split_made

    selector = "app.kubernetes.io/managed-by=laclip"
    cluster = _cluster(namespace, context)
    found = split_made([o for b in BACKENDS for o in cluster.objects(b.resource, selector)])[0]
    _twin(f"kubectl get {_job_kinds(cluster)} -n {namespace} -l {selector} -L {RUN_LABEL}")
    rows = []
    for obj in found:
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        if RUN_LABEL in labels:
            rows.append((parse_time(meta.get("creationTimestamp")), labels[RUN_LABEL],
                         labels.get(COMPONENT_LABEL, "?"), for_object(obj).state(obj)))
    if not rows:
        out.print(f"no laclip runs in namespace {namespace}")
        return
    now = dt.datetime.now(dt.timezone.utc)
    table = Table("stage", "kind", "state", "age", title=f"laclip runs in {namespace}", box=None)
    table.add_column("run", no_wrap=True)  # last, so a narrow terminal never cuts the id
    for created, run, stage, obj in sorted(rows, key=lambda r: r[0] or now, reverse=True):
        table.add_row(stage, obj.kind, obj.state, _age(created, now), run)
    out.print(table)


def logs(
    run: str = typer.Argument(..., help="Run id."),
    stage: str = typer.Option(..., "--stage", "-s", help=f"One of {', '.join(COMPONENTS)}."),
    index: Optional[int] = typer.Option(None, "--index", "-i", help="Completion index (rewrite shard, train node)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Stream until the container ends."),
    tail: Optional[int] = typer.Option(None, "--tail", help="Only the last N lines."),
    namespace: Optional[str] = NamespaceOpt,
    context: Optional[str] = ContextOpt,
) -> None:
    """Print (or follow) the log of one pod of a run's stage."""
    namespace = _ns(namespace)
    from laclip_jobs.status import of_run, pod_index

    _check_stage(stage)
    if tail is not None and tail < 0:
        raise UsageError(f"--tail must be 0 or more lines, got {tail}")
    selector = f"{_selector(run)},app.kubernetes.io/component={stage}"
    cluster = _cluster(namespace, context)
    pods = [p for p in of_run(cluster.pods(selector), run)
            if ((p.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/component") == stage]
    if not pods:
        raise LaclipError(f"run {run!r} has no {stage} pods in namespace {namespace!r}")
    indexes = sorted({i for p in pods if (i := pod_index(p)) is not None})
    if index is not None:
        pods = [p for p in pods if pod_index(p) == index]
        if not pods:
            raise UsageError(f"no {stage} pod of run {run!r} has index {index}; "
                             f"indexes with pods: {', '.join(map(str, indexes)) or 'none'}")
    # The newest pod of the lowest index: a retried index shows its latest attempt.
    pods.sort(key=lambda p: (pod_index(p) or 0, -_created(p)))
    pod = pods[0]["metadata"]["name"]
    container = _main_container(pods[0], stage)
    if index is None and len(indexes) > 1:
        err.print(styled((f"{len(indexes)} indexes have pods; showing {pod} (choose with --index)", "dim")))
    _twin(f"kubectl logs -n {namespace} {pod} -c {container}" + (" -f" if follow else "")
          + (f" --tail {tail}" if tail is not None else ""))
    if follow:
        cluster.stream_log(pod, container, tail=tail, write=lambda text: out.out(text, end="", highlight=False))
    else:
        out.out(cluster.read_log(pod, container, tail=tail), end="", highlight=False)


def _main_container(pod: dict, stage: str) -> str:
    """The stage's container: pods with sidecars (GKE's gcsfuse, a mesh proxy) refuse a log
    request that names no container."""
    names = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    if stage in names:
        return stage
    ours = [n for n in names if not n.startswith(("gke-", "istio-"))]
    return (ours or names or [stage])[0]


def _created(pod: dict) -> float:
    from laclip_jobs.status import parse_time

    when = parse_time((pod.get("metadata") or {}).get("creationTimestamp"))
    return when.timestamp() if when else 0.0


def cancel(
    run: str = typer.Argument(..., help="Run id."),
    stage: Optional[str] = typer.Option(None, "--stage", "-s",
                                        help=f"Only this stage's objects: {', '.join(COMPONENTS)}."),
    namespace: Optional[str] = NamespaceOpt,
    context: Optional[str] = ContextOpt,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a run's jobs, of every kind, and ConfigMaps; their pods go with them. Store outputs stay."""
    namespace = _ns(namespace)
    from laclip_jobs.backends import BACKENDS, for_object
    from laclip_jobs.status import of_run, split_made

    selector = _selector(run)
    if stage is not None:
        _check_stage(stage)
        selector += f",app.kubernetes.io/component={stage}"
    cluster = _cluster(namespace, context)
    # What laclip created, of every kind; what those made (a JobSet's Jobs, a TrainJob's JobSet) goes with them
    # (deleted alone, it would be made again)
    found = split_made([o for b in BACKENDS for o in cluster.objects(b.resource, selector)])[0]
    found = [o for o in of_run(found, run) if stage is None or _label(o, "app.kubernetes.io/component") == stage]
    cms = [c for c in of_run(cluster.configmaps(selector), run)
           if stage is None or _label(c, "app.kubernetes.io/component") == stage]
    _twin(f"kubectl delete {_job_kinds(cluster)},configmaps -n {namespace} -l {selector} --cascade=foreground")
    if not found:
        what = f"run {run!r}" + (f" has no {stage} jobs" if stage else " has no jobs")
        raise LaclipError(f"{what} in namespace {namespace!r}: nothing to cancel")
    names = [f"{for_object(o).kind}/{o['metadata']['name']}" for o in found]
    if not yes and not typer.confirm(f"delete {', '.join(names)} and their pods?"):
        raise typer.Exit(1)
    for obj in found:
        cluster.delete(for_object(obj).resource, obj["metadata"]["name"])
    for c in cms:
        cluster.delete_configmap(c["metadata"]["name"])
    out.print(f"cancelled run {run}: deleted {', '.join(names)}"
              + (f" and {len(cms)} ConfigMap(s)" if cms else "")
              + "; pods are removed by the garbage collector. Outputs in the store are kept.")


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("logs")(logs)
    app.command("cancel")(cancel)

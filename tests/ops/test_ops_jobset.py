"""A training JobSet through the real kubernetes client on kmock's emulator: `submit train` creates
it, `status` lists and watches it (Kueue admission, flex-start's ProvisioningRequest, quota, gang
restarts), `logs` reads a node's pod, `cancel` deletes it with its Jobs; a cluster without the
JobSet CRD gets one line saying what to install."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from typer.testing import CliRunner

from laclip.cluster import ClusterError
from laclip_cli.main import app
from laclip_jobs.backends.jobset import BACKEND as JOBSET
from laclip_jobs.status import summarise

from .conftest import JOBS, JOBSETS, PODS, PROVISIONING, WORKLOADS, Emulator, point_kubeconfig
from .test_ops_status import labels, pod, ts

NS = "laclip"
RUN = "train-demo-1201-0900-js01"
QUOTA = "couldn't assign flavors to pod set main: insufficient quota for nvidia.com/gpu in flavor a100-flex"


def cli(*args, root, input=None):
    return CliRunner().invoke(app, ["--root", root, *args], input=input, env={"COLUMNS": "250"})


def said(result) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return " ".join(result.output.split())


def plain(value):
    """An object the emulator holds, as the plain JSON data it was made of."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def jobset_status(emu: Emulator, run: str, status: dict, suspend: bool | None = None) -> dict:
    """What the JobSet controller (and Kueue, unsuspending it) would write into the created object."""
    obj = plain(emu.emu.objects[JOBSETS, NS, run])
    obj["status"] = status
    if suspend is not None:
        obj["spec"]["suspend"] = suspend
    obj["metadata"].setdefault("creationTimestamp", ts(30))
    return emu.add(JOBSETS, obj)


def test_submit_status_watch_logs_and_cancel_a_jobset(cluster, bucket):
    root = bucket.url
    submit = ["submit", "train", "--dataset", "demo", "--nodes", "2", "--gpus-per-node", "8", "--run", RUN,
              "--flex-start"]
    result = cli(*submit, root=root)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert f"created JobSet laclip/{RUN}" in result.output
    assert "kubectl get jobsets.jobset.x-k8s.io,pods" in said(result)
    assert cluster.names(JOBSETS) == {RUN}
    created = cluster.emu.objects[JOBSETS, NS, RUN]
    assert created["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "laclip-flex" and created["spec"]["suspend"]
    again = cli(*submit, root=root)  # another submission (its own lease owner) of a run that exists
    assert isinstance(again.exception, ClusterError) and "already exists and asks for something else" in \
        str(again.exception) and f"kubectl delete jobset -n laclip {RUN}" in str(again.exception)

    # Kueue holds it: the workload waits for quota, then for flex-start's ProvisioningRequest
    workload = f"jobset-{RUN}-5d2c1"
    wl = cluster.add(WORKLOADS, {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "Workload",
                            "metadata": {"name": workload, "namespace": NS, "ownerReferences": [
                                {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "name": RUN,
                                 "uid": "u1"}]},
                            "spec": {"queueName": "laclip-flex"},
                            "status": {"conditions": [{"type": "QuotaReserved", "status": "False",
                                                       "reason": "Pending", "message": QUOTA}]}})
    text = said(cli("status", RUN, "--no-store", root=root))
    assert "train: Suspended" in text and "waiting for Kueue admission in LocalQueue laclip-flex" in text
    assert QUOTA in text and "kubectl get jobsets.jobset.x-k8s.io -n laclip" in text
    cluster.add(WORKLOADS, {**wl, "status": {
        "conditions": [{"type": "QuotaReserved", "status": "True", "message": "Quota reserved in ClusterQueue"},
                       {"type": "Admitted", "status": "False", "message": "The workload has not all checks ready"}],
        "admissionChecks": [{"name": "laclip-flex-start", "state": "Pending",
                             "message": "Waiting for resources. Currently there are not enough resources available "
                                        "to fulfill the request."}]}})
    cluster.add(PROVISIONING, {"apiVersion": "autoscaling.x-k8s.io/v1", "kind": "ProvisioningRequest",
                               "metadata": {"name": f"{workload}-laclip-flex-start-1", "namespace": NS,
                                            "ownerReferences": [{"apiVersion": "kueue.x-k8s.io/v1beta1",
                                                                 "kind": "Workload", "name": workload, "uid": "w"}]},
                               "spec": {"provisioningClassName": "queued-provisioning.gke.io"},
                               "status": {"conditions": [
                                   {"type": "Accepted", "status": "True", "reason": "Accepted"},
                                   {"type": "Provisioned", "status": "False", "reason": "NotProvisioned",
                                    "message": "Waiting for resources. Currently there are not enough resources "
                                               "available to fulfill the request."}]}})
    text = said(cli("status", RUN, "--no-store", root=root))
    assert "Kueue admission check laclip-flex-start: Pending: Waiting for resources" in text
    assert f"ProvisioningRequest {workload}-laclip-flex-start-1: Provisioned=False: Waiting for resources" in text
    assert "kubectl get provisioningrequests.autoscaling.x-k8s.io -n laclip" in text

    # admitted and running: its Job and two pods, after one gang restart that did not count (a Spot reclaim)
    cluster.add(WORKLOADS, {**wl, "status": {
        "conditions": [{"type": "Admitted", "status": "True", "message": "The workload is admitted"}]}})
    jobset_status(cluster, RUN, {"restarts": 1, "restartsCountTowardsMax": 0, "replicatedJobsStatus": [
        {"name": "main", "ready": 1, "succeeded": 0, "failed": 0, "active": 1, "suspended": 0}]}, suspend=False)
    child = {"apiVersion": "batch/v1", "kind": "Job",
             "metadata": {"name": f"{RUN}-main-0", "namespace": NS,
                          "labels": {**labels(RUN, "train"), "jobset.sigs.k8s.io/jobset-name": RUN},
                          "ownerReferences": [{"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
                                               "name": RUN, "uid": "u1"}]},
             "spec": {"completions": 2, "parallelism": 2, "completionMode": "Indexed",
                      "template": {"spec": {"containers": [{"name": "train", "image": "img"}]}}},
             "status": {"active": 2, "ready": 2, "startTime": ts(20)}}
    cluster.add(JOBS, child)
    for i in range(2):
        p = pod(RUN, "train", f"{RUN}-main-0-{i}-ab{i}cd", "Running", i)
        cluster.add(PODS, p)
    text = said(cli("status", RUN, "--no-store", root=root))
    assert "train: Running" in text and "JobSet" in text and "1 of 1 job(s) ready" in text
    assert "restarts: 1 (0 of at most 3 counted)" in text and "2 Running" in text
    assert f"Job {RUN}-main-0" not in text  # the JobSet's own Job is its progress, not an object of its own
    listed = said(cli("status", root=root))
    assert RUN in listed and "JobSet" in listed and f"{RUN}-main-0" not in listed
    assert "kubectl get jobs,jobsets.jobset.x-k8s.io,jobs.batch.volcano.sh -n laclip" in listed

    # logs: the pod of node 1, its train container
    result = cli("logs", RUN, "--stage", "train", "--index", "1", root=root)
    assert result.exit_code == 0, repr(result.exception)
    assert f"kubectl logs -n laclip {RUN}-main-0-1-ab1cd -c train" in said(result)
    assert f"step 2 of pod {RUN}-main-0-1-ab1cd" in result.output

    # watch until the JobSet completes
    def complete():
        jobset_status(cluster, RUN, {"restarts": 1, "terminalState": "Completed", "conditions": [
            {"type": "Completed", "status": "True", "reason": "AllJobsCompleted", "message": "jobset completed "
             "successfully", "lastTransitionTime": ts(0)}]})

    timer = threading.Timer(0.8, complete)
    timer.start()
    result = cli("status", RUN, "--no-store", "--watch", "0.2", root=root)
    timer.join()
    assert result.exit_code == 0, repr(result.exception)
    assert result.output.count("train: Running") >= 2 and result.output.rstrip().count("train: Succeeded") == 1

    # cancel: the JobSet, with foreground propagation; its Job goes with it (deleted alone, it would be made again)
    result = cli("cancel", RUN, "--yes", root=root)
    assert result.exit_code == 0, repr(result.exception)
    assert f"deleted JobSet/{RUN}" in said(result) and "kubectl delete jobs,jobsets.jobset.x-k8s.io" in said(result)
    deletes = [r for r in cluster.requests() if r.method.value.upper() == "DELETE"]
    assert [(r.resource, r.name) for r in deletes] == [(JOBSETS, RUN)]
    policy = deletes[0].params.get("propagationPolicy") or (deletes[0].data or {}).get("propagationPolicy")
    assert policy == "Foreground" and RUN not in cluster.names(JOBSETS)


def test_a_cluster_without_the_jobset_crd_says_what_to_install(tmp_path, monkeypatch, bucket):
    emu = Emulator(jobset=False)
    try:
        point_kubeconfig(emu, tmp_path, monkeypatch)
        result = cli("submit", "train", "--dataset", "demo", "--run", RUN, root=bucket.url)
        assert isinstance(result.exception, ClusterError), result.output
        message = str(result.exception)
        assert "\n" not in message and "the cluster does not serve jobsets.jobset.x-k8s.io" in message
        assert "install JobSet v0.10 or later (kubectl apply --server-side -f https://github.com/kubernetes-sigs/" \
               "jobset/releases/download/v0.12.0/manifests.yaml)" in message
        # status and cancel still work, and their kubectl twins leave out the kind kubectl would reject
        emu.add(JOBS, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {
            "name": "eval-x", "namespace": NS, "labels": labels("eval-x", "eval"), "creationTimestamp": ts(5)},
            "spec": {"template": {"spec": {"containers": [{"name": "eval", "image": "i"}]}}}, "status": {}})
        text = said(cli("status", root=bucket.url))
        assert "eval-x" in text and "kubectl get jobs,jobs.batch.volcano.sh -n laclip" in text
        assert "jobset" not in text.lower()
    finally:
        emu.close()


def js(status=None, suspend=False, labels_=None, **spec) -> dict:
    return {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
            "metadata": {"name": RUN, "namespace": NS, "labels": labels_ or labels(RUN, "train")},
            "spec": {"suspend": suspend, "replicatedJobs": [{"name": "main", "replicas": 1}],
                     "failurePolicy": {"maxRestarts": 3}, **spec}, "status": status or {}}


def test_jobset_states():
    failed = JOBSET.state(js({"restarts": 4, "restartsCountTowardsMax": 3, "conditions": [
        {"type": "Failed", "status": "True", "reason": "ReachedMaxRestarts",
         "message": "jobset failed due to reaching max number of restarts"}]}))
    assert failed.state == "Failed" and "reaching max number of restarts; restarts: 4 (3 of at most 3" in failed.detail
    permanent = JOBSET.state(js({"conditions": [{"type": "Failed", "status": "True", "reason": "FailedJobs",
                                                  "message": "failed due to FailJobSet rule PermanentError"}]}))
    assert (permanent.state, permanent.detail) == ("Failed", "failed due to FailJobSet rule PermanentError")
    assert JOBSET.state(js(suspend=True)).detail == "suspended (spec.suspend=true)"
    pending = JOBSET.state(js({"replicatedJobsStatus": [{"name": "main", "ready": 0, "active": 1}]}))
    assert (pending.state, pending.detail) == ("Pending", "0 of 1 job(s) ready, 1 active")
    # a failed run is a failed stage, with the reason; its pods' exit shows why
    st = summarise(RUN, [js({"conditions": [
        {"type": "Failed", "status": "True", "message": "failed due to FailJobSet rule PermanentError"}]})])
    assert st.stages["train"].state == "Failed"
    assert st.stages["train"].reasons == [f"JobSet {RUN}: failed due to FailJobSet rule PermanentError"]

"""`laclip status / logs / cancel` through the real kubernetes client against kmock's emulator,
which holds a run in the states a real cluster shows: running, pending unschedulable,
image pull failure, a failed index, succeeded, and a Job waiting for Kueue admission."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from laclip import layout
from laclip_cli.main import app
from .conftest import CONFIGMAPS, EVENTS, JOBS, PODS, VOLCANO, WORKLOADS
from .status_objects import (
    EVAL, NS, QUEUED, RESULT_ID, REWRITE, REWRITE_ID, TRAIN, UNSCHEDULABLE, cstatus, event, job, labels, pod, ts,
)


@pytest.fixture
def populated(cluster):
    """One rewrite run mid-flight, a running train run, a finished eval, a queued rewrite, and noise."""
    c = cluster
    c.add(JOBS, job(REWRITE, "rewrite", REWRITE, {"completions": 8, "parallelism": 4, "completionMode": "Indexed",
                                                  "backoffLimitPerIndex": 1},
                    {"startTime": ts(60), "active": 3, "ready": 1, "completedIndexes": "0-2,5", "failedIndexes": "3"},
                    annotations={"laclip.dev/rewrite-id": REWRITE_ID}))
    c.add(PODS, pod(REWRITE, "rewrite", f"{REWRITE}-4-abcde", "Running", 4))
    c.add(PODS, pod(REWRITE, "rewrite", f"{REWRITE}-3-old00", "Failed", 3,
                    {"containerStatuses": [cstatus({"terminated": {"exitCode": 137, "reason": "OOMKilled"}})]},
                    minutes_ago=50))
    c.add(PODS, pod(REWRITE, "rewrite", f"{REWRITE}-6-fghij", "Pending", 6,
                    {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                     "message": UNSCHEDULABLE}]}))
    c.add(PODS, pod(REWRITE, "rewrite", f"{REWRITE}-7-klmno", "Pending", 7,
                    {"conditions": [{"type": "PodScheduled", "status": "True"}],
                     "containerStatuses": [cstatus({"waiting": {
                         "reason": "ImagePullBackOff", "message": "Back-off pulling image \"bad/rewrite:0.1.0\""}})]}))
    c.add(EVENTS, event(f"{REWRITE}-6-fghij", "Pod", "FailedScheduling", UNSCHEDULABLE))
    c.add(EVENTS, event(f"{REWRITE}-7-klmno", "Pod", "Failed", "Failed to pull image \"bad/rewrite:0.1.0\": not found"))
    c.add(EVENTS, event(f"{REWRITE}-4-abcde", "Pod", "Started", "Started container rewrite", "Normal"))
    c.add(VOLCANO, {"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job",
                    "metadata": {"name": TRAIN, "namespace": NS, "labels": labels(TRAIN, "train"),
                                 "creationTimestamp": ts(120)},
                    "spec": {"tasks": [{"name": "trainer", "replicas": 2}]},
                    "status": {"state": {"phase": "Running"}, "running": 2}})
    for i in range(2):
        p = pod(TRAIN, "train", f"{TRAIN}-main-{i}", "Running", None)
        p["metadata"]["labels"]["torchx.pytorch.org/replica-id"] = str(i)  # as TorchX labels its pods
        c.add(PODS, p)
    c.add(JOBS, job(EVAL, "eval", EVAL, {"completions": 1},
                    {"startTime": ts(30), "completionTime": ts(20), "succeeded": 1,
                     "conditions": [{"type": "Complete", "status": "True"}]}))
    c.add(PODS, pod(EVAL, "eval", f"{EVAL}-xyz12", "Succeeded"))
    c.add(JOBS, job(QUEUED, "rewrite", QUEUED, {"completions": 4, "completionMode": "Indexed", "suspend": True},
                    {}, {"kueue.x-k8s.io/queue-name": "laclip-a100"}))
    c.add(WORKLOADS, {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "Workload",
                      "metadata": {"name": f"job-{QUEUED}-1a2b3", "namespace": NS,
                                   "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": QUEUED,
                                                        "uid": f"uid-{QUEUED}"}]},
                      "spec": {"queueName": "laclip-a100"},
                      "status": {"conditions": [{"type": "QuotaReserved", "status": "False", "reason": "Pending",
                                                 "message": "couldn't assign flavors to pod set main: insufficient "
                                                            "quota for nvidia.com/gpu in flavor a100"}]}})
    c.add(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": f"{REWRITE}-config", "namespace": NS, "labels": labels(REWRITE, "rewrite")},
                       "data": {"config.json": "{}"}})
    # Another team's pod in the same namespace must never show up in our run.
    c.add(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "someone-else", "namespace": NS,
                                                                   "labels": {"app": "other"}},
                 "spec": {"containers": [{"name": "x", "image": "x"}]}, "status": {"phase": "Pending"}})
    return c


@pytest.fixture
def store(demo_copy):
    for shard in ("00000", "00001"):
        demo_copy.write_bytes(f"rewrites/demo/{REWRITE_ID}/{shard}.parquet", b"x")
    demo_copy.write_bytes(f"rewrites/demo/{REWRITE_ID}/config.json", b"{}")  # not a shard
    demo_copy.write_bytes(f"rewrites/demo/{REWRITE}/00002.parquet", b"x")  # another rewrite id: not ours
    for step in (500, 1000):
        demo_copy.write_bytes(f"checkpoints/{TRAIN}/step_{step}.pt", b"x")
    demo_copy.write_text(f"checkpoints/{TRAIN}/config.json", '{"model": "ViT-B-16", "steps": 4000}')
    # the eval worker's layout (laclip.layout.eval_result: <task>-<result id>.json); config.json and the
    # features cache are not results
    demo_copy.write_bytes(layout.eval_result(EVAL, "step_1000", "demo-eval", "zeroshot_classification", RESULT_ID),
                          b"{}")
    demo_copy.write_bytes(f"evals/{EVAL}/step_1000/config.json", b"{}")
    demo_copy.write_bytes(f"evals/{EVAL}/step_1000/features/demo-eval/test.npz", b"x")
    return demo_copy


def run_cli(store, *args, input=None):
    return CliRunner().invoke(app, ["--root", store.url, *args], input=input, catch_exceptions=True)


def test_status_of_a_rewrite_mid_flight(populated, store):
    result = run_cli(store, "status", REWRITE)
    assert result.exit_code == 0, result.output + repr(result.exception)
    text = " ".join(result.output.split())
    assert f"kubectl get jobs,pods -n laclip -l laclip.dev/run={REWRITE}" in text
    assert "rewrite: Running" in text
    assert "4 of 8 completed; failed: 3" in text
    assert "1 Failed, 2 Pending, 1 Running" in text
    assert "unschedulable: 0/4 nodes are available: 4 Insufficient nvidia.com/gpu" in text
    assert "ImagePullBackOff" in text and "FailedScheduling" in text
    assert "exited 137 (OOMKilled)" in text
    assert "2 of 4 shards rewritten" in text and REWRITE_ID in text  # from the store, not from the Job
    assert "shards/hour" in text and "ETA" in text
    assert "someone-else" not in text and "Started container" not in text


def test_status_of_train_eval_and_queued_runs(populated, store):
    text = " ".join(run_cli(store, "status", TRAIN).output.split())
    assert "train: Running" in text and "VolcanoJob" in text and "2 Running" in text
    assert "step 1,000 of 4,000 (2 kept)" in text and "jobs.batch.volcano.sh" in text
    # 1,000 steps in the 2 hours since the Volcano Job started: 3,000 to go at 500 an hour.
    assert re.search(r"(499\.\d|500\.0) steps/hour, ETA (5h59m|6h00m)", text), text
    text = " ".join(run_cli(store, "status", EVAL).output.split())
    assert "eval: Succeeded" in text and "1 Succeeded" in text and "1 of 1 completed" in text
    assert f"eval results 1: step_1000/demo-eval/zeroshot_classification-{RESULT_ID}.json" in text
    assert "ETA" not in text
    text = " ".join(run_cli(store, "status", QUEUED).output.split())
    assert "rewrite: Suspended" in text
    assert "waiting for Kueue admission in LocalQueue laclip-a100" in text
    assert "insufficient quota for nvidia.com/gpu in flavor a100" in text


def test_status_lists_runs_and_rejects_unknown(populated, store):
    text = run_cli(store, "status").output
    for run in (REWRITE, TRAIN, EVAL, QUEUED):
        assert run in text
    assert "kubectl get jobs,jobsets.jobset.x-k8s.io,jobs.batch.volcano.sh -n laclip" in " ".join(text.split())
    result = run_cli(store, "status", "no-such-run")
    assert "has no jobs or pods" in str(result.exception)
    result = run_cli(store, "status", "Bad Run!")
    assert "cannot be a Kubernetes label value" in str(result.exception)


def test_watch_refreshes_until_the_run_finishes(populated, store):
    import threading

    def finish():  # the eval Job of the QUEUED-like run completes while `status --watch` polls
        populated.add(JOBS, job(run, "eval", run, {"completions": 1},
                                {"startTime": ts(3), "completionTime": ts(0), "succeeded": 1,
                                 "conditions": [{"type": "Complete", "status": "True"}]}))

    run = "eval-demo-1122-0900-ee04"
    populated.add(JOBS, job(run, "eval", run, {"completions": 1}, {"startTime": ts(3), "active": 1, "ready": 1}))
    timer = threading.Timer(0.8, finish)
    timer.start()
    result = run_cli(store, "status", run, "--watch", "0.2")
    timer.join()
    assert result.exit_code == 0, repr(result.exception)
    assert result.output.count("eval: Running") >= 2 and result.output.rstrip().count("eval: Succeeded") == 1
    assert result.output.index("eval: Running") < result.output.index("eval: Succeeded")


def test_watch_ends_cleanly_when_the_run_is_cancelled(populated, store):
    import threading

    run = "eval-demo-1122-0930-ff05"
    populated.add(JOBS, job(run, "eval", run, {"completions": 1}, {"startTime": ts(3), "active": 1}))
    timer = threading.Timer(0.8, lambda: populated.emu.objects[JOBS, NS, run].delete())  # `laclip cancel`
    timer.start()
    result = run_cli(store, "status", run, "--watch", "0.2")
    timer.join()
    assert result.exit_code == 0, repr(result.exception)  # it was an error: 'has no jobs or pods'
    assert "eval: Pending" in result.output and "its jobs and pods are gone" in " ".join(result.output.split())


def test_logs_pick_the_index_and_follow(populated, store):
    result = run_cli(store, "logs", REWRITE, "--stage", "rewrite", "--index", "6")
    assert result.exit_code == 0, repr(result.exception)
    assert f"kubectl logs -n laclip {REWRITE}-6-fghij -c rewrite" in result.output
    log_reads = [r for r in populated.requests() if r.subresource == "log"]
    assert log_reads[-1].params.get("container") == "rewrite"  # a pod with a sidecar needs the name
    assert f"step 2 of pod {REWRITE}-6-fghij" in result.output
    result = run_cli(store, "logs", REWRITE, "--stage", "rewrite", "--index", "4", "--follow")
    assert f"step 1 of pod {REWRITE}-4-abcde" in result.output and " -f" in result.output
    follow = [r for r in populated.requests() if str(r.params.get("follow")).lower() == "true"]
    assert follow and follow[-1].name == f"{REWRITE}-4-abcde"
    # --tail reaches the API when following too, and the twin says what was asked, 0 included
    result = run_cli(store, "logs", REWRITE, "--stage", "rewrite", "--index", "4", "--follow", "--tail", "5")
    assert f"{REWRITE}-4-abcde -c rewrite -f --tail 5" in result.output
    follow = [r for r in populated.requests() if str(r.params.get("follow")).lower() == "true"]
    assert follow[-1].params.get("tailLines") == "5"
    result = run_cli(store, "logs", REWRITE, "--stage", "rewrite", "--index", "4", "--tail", "0")
    assert f"{REWRITE}-4-abcde -c rewrite --tail 0" in result.output
    assert "--tail must be 0 or more" in str(run_cli(store, "logs", REWRITE, "--stage", "rewrite",
                                                     "--tail", "-3").exception)
    result = run_cli(store, "logs", TRAIN, "--stage", "train", "--index", "1")
    assert f"step 1 of pod {TRAIN}-main-1" in result.output
    result = run_cli(store, "logs", REWRITE, "--stage", "rewrite", "--index", "9")
    assert "indexes with pods: 3, 4, 6, 7" in str(result.exception)
    result = run_cli(store, "logs", REWRITE, "--stage", "deploy")
    assert "unknown stage" in str(result.exception)


def test_every_stage_of_the_registry_has_logs_status_and_cancel(populated, store):
    """--stage takes every stage's component, get-eval's and rewrite-import's too (one registry)."""
    from laclip_cli.stages import COMPONENTS

    assert COMPONENTS == ("rewrite-import", "rewrite", "train", "eval", "get-eval")
    fetch = "get-eval-laclip-paper-1122-0900-ee06"
    populated.add(JOBS, job(fetch, "get-eval", fetch, {"completions": 2, "completionMode": "Indexed"},
                            {"startTime": ts(5), "active": 2, "ready": 2}))
    for i in range(2):
        populated.add(PODS, pod(fetch, "get-eval", f"{fetch}-{i}-xy{i}z9", "Running", i))
    result = run_cli(store, "logs", fetch, "--stage", "get-eval", "--index", "1")
    assert result.exit_code == 0, repr(result.exception)
    assert f"kubectl logs -n laclip {fetch}-1-xy1z9 -c get-eval" in result.output
    assert f"step 2 of pod {fetch}-1-xy1z9" in result.output
    assert "get-eval: Running" in run_cli(store, "status", fetch, "--no-store").output
    result = run_cli(store, "cancel", fetch, "--stage", "get-eval", "--yes")
    assert result.exit_code == 0 and fetch not in populated.names(JOBS), repr(result.exception)
    result = run_cli(store, "logs", REWRITE, "--stage", "rewrite-import")
    assert "has no rewrite-import pods" in str(result.exception)  # a known stage, with nothing to show


def test_cancel_deletes_jobs_with_propagation(populated, store):
    result = run_cli(store, "cancel", REWRITE, "--yes")
    assert result.exit_code == 0, repr(result.exception)
    assert "--cascade=foreground" in result.output
    assert REWRITE not in populated.names(JOBS) and QUEUED in populated.names(JOBS)
    assert f"{REWRITE}-config" not in populated.names(CONFIGMAPS)
    deletes = [r for r in populated.requests() if r.method == "DELETE" and r.resource == JOBS]
    assert [r.name for r in deletes] == [REWRITE]
    policy = deletes[0].params.get("propagationPolicy") or (deletes[0].data or {}).get("propagationPolicy")
    assert policy == "Foreground"  # without it, deleting a Job through the API orphans its pods
    run_cli(store, "cancel", TRAIN, "--yes")
    assert TRAIN not in populated.names(VOLCANO)
    assert "nothing to cancel" in str(run_cli(store, "cancel", REWRITE, "--yes").exception)
    assert run_cli(store, "cancel", EVAL, input="n\n").exit_code == 1  # declined: nothing deleted
    assert EVAL in populated.names(JOBS)


def test_cluster_without_volcano_or_kueue(tmp_path, monkeypatch, store):
    """CRDs that are not installed answer 404: status still works from batch Jobs."""
    from .conftest import Emulator, point_kubeconfig

    emu = Emulator(volcano=False, kueue=False, jobset=False)
    try:
        point_kubeconfig(emu, tmp_path, monkeypatch)
        emu.add(JOBS, job(EVAL, "eval", EVAL, {"completions": 1}, {"startTime": ts(5), "active": 1}))
        text = " ".join(run_cli(store, "status", EVAL).output.split())
        assert "eval: Pending" in text or "eval: Running" in text
        # the kubectl twins name only kinds this cluster serves (kubectl rejects an unknown kind)
        text = " ".join(run_cli(store, "status").output.split())
        assert EVAL in text and "kubectl: kubectl get jobs -n laclip -l app.kubernetes.io/managed-by=laclip" in text
        text = " ".join(run_cli(store, "cancel", EVAL, "--yes").output.split())
        assert f"kubectl: kubectl delete jobs,configmaps -n laclip -l laclip.dev/run={EVAL}" in text
        assert "volcano" not in text and "jobset" not in text and EVAL not in emu.names(JOBS)
    finally:
        emu.close()


def test_no_cluster_configured_is_a_clear_error(tmp_path):
    env = {"KUBECONFIG": str(tmp_path / "missing"), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "laclip_cli.main", "status", "some-run"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "no Kubernetes cluster configured" in proc.stderr and "Traceback" not in proc.stderr


def test_unreadable_kubeconfig_is_a_clear_error(tmp_path):
    broken = tmp_path / "kubeconfig"
    broken.write_text("clusters: [\n")  # a truncated edit
    for path in (broken, tmp_path):  # a YAML error, a folder
        env = {"KUBECONFIG": str(path), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
        proc = subprocess.run([sys.executable, "-m", "laclip_cli.main", "status"], env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "cannot read the kubeconfig" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_status_json_and_cancel_one_stage(populated, store):
    import json

    result = run_cli(store, "status", REWRITE, "--json")
    assert result.exit_code == 0, repr(result.exception)
    doc = json.loads(result.stdout)
    rewrite = doc["stages"]["rewrite"]
    assert rewrite["state"] == "Running" and rewrite["completed"] == [0, 1, 2, 5] and rewrite["failed"] == [3]
    assert rewrite["pods"] == {"Running": 1, "Failed": 1, "Pending": 2}
    assert rewrite["store"]["shards_done"] == 2 and any("Insufficient nvidia.com/gpu" in r for r in rewrite["reasons"])
    # A run whose eval Job shares the run id with its training: cancel only the eval.
    populated.add(JOBS, job(TRAIN, "eval", f"eval-{TRAIN}", {"completions": 1}, {"active": 1}))
    result = run_cli(store, "cancel", TRAIN, "--stage", "eval", "--yes")
    assert result.exit_code == 0, repr(result.exception)
    assert f"eval-{TRAIN}" not in populated.names(JOBS) and TRAIN in populated.names(VOLCANO)
    assert "nothing to cancel" in str(run_cli(store, "cancel", TRAIN, "--stage", "eval", "--yes").exception)


def test_forbidden_kueue_workloads_are_skipped_but_forbidden_jobs_are_an_error(populated, store):
    populated.emu["list", WORKLOADS] << 403  # the user's Role has no Kueue rights
    result = run_cli(store, "status", QUEUED)
    assert result.exit_code == 0, repr(result.exception)
    assert "waiting for Kueue admission" in " ".join(result.output.split())
    # The library logs what it skipped (laclip.cluster); the console script shows it as a note.
    proc = subprocess.run([sys.executable, "-m", "laclip_cli.main", "--root", store.url, "status", QUEUED],
                          capture_output=True, text=True, timeout=60)  # $KUBECONFIG: the emulator
    assert proc.returncode == 0, proc.stderr
    assert "waiting for Kueue admission" in " ".join(proc.stdout.split())
    assert "note: no right to list workloads.kueue.x-k8s.io in laclip; skipping them" in proc.stderr
    populated.emu["list", JOBS] << 403
    result = run_cli(store, "status", QUEUED)
    assert "forbidden in namespace 'laclip'" in str(result.exception)


def test_a_failed_stage_stops_its_clock_and_has_no_eta(cluster, store):
    run = "rewrite-demo-1122-0800-ff05"
    cluster.add(JOBS, job(run, "rewrite", run, {"completions": 8, "completionMode": "Indexed"},
                          {"startTime": ts(60), "completedIndexes": "0-1", "failedIndexes": "2",
                           "conditions": [{"type": "Failed", "status": "True", "reason": "FailedIndexes",
                                           "message": "Job has failed indexes", "lastTransitionTime": ts(10)}]}))
    text = " ".join(run_cli(store, "status", run, "--no-store").output.split())
    assert "rewrite: Failed" in text and "elapsed 50m00s" in text, text
    assert "indexes/hour" in text and "ETA" not in text


def test_rewrite_of_some_shards_counts_against_its_own_total(cluster, store):
    """`submit rewrite --num-shards 3`: the Job says it covers 3 shards (laclip.dev/shards); its
    progress and ETA are out of 3, not out of every shard the dataset has (4 here)."""
    run = "rewrite-demo-1122-0830-aa06"
    cluster.add(JOBS, job(run, "rewrite", run, {"completions": 3, "completionMode": "Indexed"},
                          {"startTime": ts(60), "active": 1, "ready": 1, "completedIndexes": "0-1"},
                          annotations={"laclip.dev/rewrite-id": REWRITE_ID, "laclip.dev/shards": "3"}))
    text = " ".join(run_cli(store, "status", run).output.split())
    assert "2 of 3 shards rewritten" in text and re.search(r"ETA 30m0\ds", text), text  # 1 shard at 2/hour
    import json

    doc = json.loads(run_cli(store, "status", run, "--json").stdout)
    assert doc["stages"]["rewrite"]["store"]["shards_total"] == 3


def test_progress_of_a_run_in_another_store_is_not_read_as_zero(cluster, store):
    """A shell without $LACLIP_ROOT reads the local default store: a rewrite writing to a bucket
    must not show 0 shards there; status says where it writes instead."""
    run = "rewrite-demo-1122-0845-bb07"
    cluster.add(JOBS, job(run, "rewrite", run, {"completions": 4, "completionMode": "Indexed"},
                          {"startTime": ts(60), "active": 1, "ready": 1, "completedIndexes": "0"},
                          annotations={"laclip.dev/rewrite-id": REWRITE_ID, "laclip.dev/shards": "4",
                                       "laclip.dev/output": f"gs://prod-bucket/laclip/rewrites/demo/{REWRITE_ID}/"}))
    text = " ".join(run_cli(store, "status", run).output.split())
    assert "shards rewritten" not in text, text
    assert "this run writes to gs://prod-bucket/laclip" in text
    assert "laclip --root gs://prod-bucket/laclip status" in text
    assert "1 of 4 completed" in text and "indexes/hour" in text  # the Job's own progress still shows
    import json

    doc = json.loads(run_cli(store, "status", run, "--json").stdout)
    assert "gs://prod-bucket/laclip" in doc["stages"]["rewrite"]["store"]["error"]

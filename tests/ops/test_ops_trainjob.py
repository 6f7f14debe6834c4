"""Kubeflow Trainer v2's TrainJob (`--scheduler trainjob`, laclip_jobs.backends.trainjob): strict
against Trainer's vendored CRDs; the JobSet that Trainer builds from it and runtime laclip-torch has
the JobSet backend's pods, failure policies and rendezvous; what a TrainJob cannot carry is refused;
a golden file; and submit, status, logs and cancel through the real kubernetes client on kmock's
emulator, with Trainer's JobSet, its Job and pods as Trainer and JobSet make them."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from laclip.errors import EXIT_PERMANENT, UsageError
from laclip_cli.main import app
from laclip_jobs.backends import jobset, trainjob
from laclip_jobs.train import render
from tests import crd_schema
from tests.train.test_jobset import RUN, cc12m, torchrun_args

from .conftest import JOBS, JOBSETS, PODS, TRAINJOBS, WORKLOADS, Emulator
from .status_objects import NS, labels, pod, ts
from .test_ops_jobset import plain, said

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "train" / "golden" / "cc12m-trainjob.yaml"
RUNTIME_FILE = REPO / "manifests" / "components" / "trainer" / "runtime.yaml"
PET = {"PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT"}


def check_trainjob(tj: dict) -> None:
    """Trainer's CRD, strictly, and what its CEL rules and webhook check that a JSON schema cannot."""
    crd_schema.validate(tj)
    name = tj["metadata"]["name"]
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63  # RFC 1035 label
    assert not PET & {e["name"] for e in tj["spec"]["trainer"]["env"]}  # Trainer's reserved torchrun env
    for patch in tj["spec"]["runtimePatches"]:
        assert re.fullmatch(r"[a-z0-9.-]+\.[a-z]+/[A-Za-z0-9._/-]+", patch["manager"])  # a domain-prefixed path
        for rjob in patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]:
            for c in rjob["template"]["spec"]["template"]["spec"].get("containers", []):
                assert c["name"] == "node" and "env" not in c  # Trainer refuses env patches of the node


def merge(base: dict, patch: dict) -> dict:
    """A strategic merge patch as Trainer applies runtime patches to a pod spec: maps merge, lists of
    named items (containers, volumes) merge by name, anything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        elif key in ("containers", "volumes", "volumeMounts") and isinstance(value, list):
            named = {item["name"]: item for item in out.get(key, [])}
            for item in value:
                named[item["name"]] = merge(named.get(item["name"], {}), item)
            out[key] = list(named.values())
        else:
            out[key] = copy.deepcopy(value)
    return out


def trainer_builds(tj: dict, runtime: dict) -> dict:
    """The JobSet Kubeflow Trainer v2.3 builds from a TrainJob and its runtime (the jobset and torch
    plugins): runtime patches merged; the trainer container gets the image, command, env and
    resources, the torchrun PET_* env and port 29500; numNodes sets the node Job's pod count."""
    spec, name = copy.deepcopy(runtime["spec"]["template"]["spec"]), tj["metadata"]["name"]
    labels_ = {}
    for patch in tj["spec"]["runtimePatches"]:
        template = patch["trainingRuntimeSpec"]["template"]
        labels_.update(template.get("metadata", {}).get("labels", {}))
        for rpatch in template["spec"]["replicatedJobs"]:
            (rjob,) = [r for r in spec["replicatedJobs"] if r["name"] == rpatch["name"]]
            rjob["template"] = merge(rjob["template"], rpatch["template"])
    trainer = tj["spec"]["trainer"]
    (rjob,) = [r for r in spec["replicatedJobs"]
               if r["template"]["metadata"]["labels"].get(trainjob.ANCESTOR_LABEL) == "trainer"]
    job = rjob["template"]["spec"]
    job["parallelism"] = job["completions"] = trainer["numNodes"]
    (node,) = [c for c in job["template"]["spec"]["containers"] if c["name"] == "node"]
    node.update(image=trainer["image"], command=trainer["command"], resources=trainer["resourcesPerNode"])
    node["env"] = trainer["env"] + [
        {"name": "PET_NNODES", "value": str(trainer["numNodes"])},
        {"name": "PET_NPROC_PER_NODE", "value": str(trainer["numProcPerNode"])},
        {"name": "PET_NODE_RANK", "valueFrom": {"fieldRef": {
            "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}},
        {"name": "PET_MASTER_ADDR", "value": f"{name}-node-0-0.{name}"},
        {"name": "PET_MASTER_PORT", "value": "29500"}]
    node["ports"] = [{"containerPort": 29500}]
    if tj["spec"].get("suspend"):
        spec["suspend"] = True
    return {"apiVersion": jobset.API, "kind": jobset.KIND,
            "metadata": {"name": name, "namespace": tj["metadata"]["namespace"], "labels": labels_},
            "spec": spec}


def node_pod(js: dict) -> dict:
    """The pod template of a JobSet's one replicated Job, its container named `node`, the rendezvous
    host and ports left out (they name the replicated Job: `main` for ours, `node` for Trainer's)."""
    (pod_,) = jobset.pod_templates(js)
    pod_ = copy.deepcopy(pod_)
    (c,) = pod_["spec"]["containers"]
    c["name"] = "node"
    c["env"] = [e for e in c["env"] if e["name"] not in PET | {jobset.RANK0_ENV}]
    c.pop("ports")
    return pod_


def test_the_issue_command_renders_a_trainjob_that_passes_trainers_crd():
    result = CliRunner().invoke(app, ["--root", "gs://bucket/x", "submit", "train", "--dataset", "cc12m",
                                      "--rewrites", "any", "--model", "ViT-B-16", "--nodes", "4", "--scheduler",
                                      "trainjob", "--queue", "a100", "--dry-run"])
    assert result.exit_code == 0, result.output
    (tj,) = [d for d in yaml.safe_load_all(result.stdout) if d]
    check_trainjob(tj)
    assert (tj["apiVersion"], tj["kind"]) == ("trainer.kubeflow.org/v1alpha1", "TrainJob")
    assert tj["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "a100" and tj["spec"]["suspend"] is True
    assert tj["spec"]["runtimeRef"] == {"apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime",
                                        "name": "laclip-torch"}
    trainer, name = tj["spec"]["trainer"], tj["metadata"]["name"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (4, 8)  # 4 nodes x 8 GPUs
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "8"
    args = torchrun_args({"spec": {"containers": [trainer]}})
    assert args[:3] == ["python", "-m", "laclip.train.launch"]
    assert args[args.index("--nnodes") + 1] == "4" and args[args.index("--nproc_per_node") + 1] == "8"
    assert args[args.index("--rdzv_endpoint") + 1] == "${LACLIP_RDZV_HOST:=localhost}:29500"
    # the rendezvous host is pod 0 of Trainer's JobSet: the host Trainer names in PET_MASTER_ADDR
    env = {e["name"]: e["value"] for e in trainer["env"]}
    assert env["LACLIP_RDZV_HOST"] == f"{name}-node-0-0.{name}"
    assert "estimate: train cc12m on 32 GPU(s)" in result.stderr


def test_render_matches_golden():
    (tj,) = render(cc12m(nodes="2", scheduler="trainjob", cluster={"queue": "a100"}))
    check_trainjob(tj)
    if os.environ.get("LACLIP_UPDATE_GOLDEN"):  # regenerate on purpose, then review the diff
        GOLDEN.write_text(yaml.safe_dump(tj, sort_keys=False, width=120))
    assert tj == yaml.safe_load(GOLDEN.read_text())


@pytest.mark.parametrize("cluster", [{"queue": "a100"}, {"spot": True},
                                     {"accelerator": "nvidia-a100-80gb", "shm": "64Gi", "service_account": "team-sa"}])
def test_trainer_builds_the_jobset_backends_pods_and_failure_policies(cluster):
    """Trainer's JobSet (laclip-torch + the TrainJob) runs the JobSet backend's very pod: command,
    image, env, resources, GKE placement, service account, security, /dev/shm, labels; and ends on
    EXIT_PERMANENT, restarts on a disruption, as the JobSet backend's does."""
    (tj,) = render(cc12m(nodes="3", scheduler="trainjob", cluster=cluster))
    built = trainer_builds(tj, trainjob.runtime(tj["spec"]["runtimeRef"]["name"]))
    crd_schema.validate(built)
    for job in jobset.job_templates(built):
        kubernetes_validate.validate(job, "1.33", strict=True)
    (ours,) = render(cc12m(nodes="3", cluster=cluster))
    pod_ = node_pod(built)
    command = pod_["spec"]["containers"][0]["command"]
    assert command[-1].count('"scheduler":"trainjob"') == 1  # the config the entrypoint gets names its backend
    command[-1] = command[-1].replace('"scheduler":"trainjob"', '"scheduler":"jobset"')
    assert pod_ == node_pod(ours)
    assert built["metadata"]["labels"] == ours["spec"]["replicatedJobs"][0]["template"]["metadata"]["labels"]
    job, own = built["spec"]["replicatedJobs"][0]["template"]["spec"], ours["spec"]["replicatedJobs"][0]["template"]
    assert job["template"]["spec"]["automountServiceAccountToken"] is True and job["backoffLimit"] == 0
    assert job["podFailurePolicy"] == jobset.failure_policies("node", EXIT_PERMANENT)[0]
    assert (job["parallelism"], job["completions"], job["completionMode"]) == (3, 3, "Indexed")
    assert built["spec"]["failurePolicy"] == ours["spec"]["failurePolicy"]  # maxRestarts 3 and the two rules
    assert own["spec"]["podFailurePolicy"] == jobset.failure_policies("train", EXIT_PERMANENT)[0]
    assert built["spec"]["network"] == {"enableDNSHostnames": True, "publishNotReadyAddresses": True}
    env = {e["name"]: e.get("value") for e in job["template"]["spec"]["containers"][0]["env"]}
    assert env["LACLIP_RDZV_HOST"] == env["PET_MASTER_ADDR"]  # torchrun meets where Trainer says pod 0 is


def test_runtime_manifest_is_the_backends_and_passes_its_crd():
    shipped = list(yaml.safe_load_all(RUNTIME_FILE.read_text()))
    assert shipped == [trainjob.runtime(name) for name in trainjob.RUNTIMES]
    for rt in shipped:
        crd_schema.validate(rt)
    assert [rt["spec"]["template"]["spec"]["failurePolicy"]["maxRestarts"] for rt in shipped] == [3, 20]


def test_trainer_component_renders(tmp_path):
    """The example overlay plus components/trainer: the runtime, labelled as laclip's, strict to its CRD."""
    from .test_ops_manifests import MANIFESTS, kustomize

    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(MANIFESTS / "overlays" / "example", tmp_path)],
        "components": [os.path.relpath(MANIFESTS / "components" / "trainer", tmp_path)]}))
    objs = kustomize(tmp_path, "--load-restrictor", "LoadRestrictionsNone")
    runtimes = [o for o in objs if o["kind"] == "ClusterTrainingRuntime"]
    assert [rt["metadata"]["name"] for rt in runtimes] == list(trainjob.RUNTIMES)
    for rt in runtimes:
        crd_schema.validate(rt)
        assert rt["metadata"]["labels"]["app.kubernetes.io/name"] == "laclip" and "namespace" not in rt["metadata"]


@pytest.mark.parametrize("values, message", [
    (dict(nodes="2:8"), "--nodes 2:8 is elastic, and a TrainJob runs a fixed gang"),
    (dict(cluster={"priority_class": "laclip-train"}), "--priority-class laclip-train: a TrainJob takes this"),
    (dict(max_job_retries=7), "--max-job-retries 7: a TrainJob takes this from its runtime (ClusterTrainingRuntime "
                              "laclip-torch)"),
    (dict(max_job_retries=3, cluster={"spot": True}), "(ClusterTrainingRuntime laclip-torch-spot)"),
    (dict(run="1st-run"), "must start with a letter"),
    (dict(run="r" * 60), "over Kubernetes' limit of 63"),
])
def test_what_a_trainjob_cannot_carry_is_refused(values, message):
    run = values.pop("run", None)
    cfg = cc12m(scheduler="trainjob", **{"nodes": "2", **values})
    with pytest.raises(UsageError, match=re.escape(message)):
        render(cfg.model_copy(update={"run": run}) if run else cfg)


def test_kueue_flex_start_and_topology_reach_the_trainjob():
    (tj,) = render(cc12m(scheduler="trainjob", flex_start=True, flex_start_max_run_s=86400, topology="required"))
    check_trainjob(tj)
    assert tj["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "laclip-flex" and tj["spec"]["suspend"]
    assert tj["metadata"]["annotations"]["provreq.kueue.x-k8s.io/maxRunDurationSeconds"] == "86400"
    pod_ = tj["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0][
        "template"]["spec"]["template"]
    assert pod_["metadata"]["annotations"] == {"kueue.x-k8s.io/podset-required-topology":
                                               "cloud.google.com/gce-topology-block"}
    assert pod_["spec"]["nodeSelector"]["cloud.google.com/gke-queued"] == "true"
    (plain,) = render(cc12m(scheduler="trainjob", nodes="2"))
    assert "suspend" not in plain["spec"] and "kueue.x-k8s.io/queue-name" not in plain["metadata"]["labels"]


def made_by_trainer(emu: Emulator, tj: dict, nodes: int, phase: str = "Running") -> None:
    """What Trainer, JobSet and the Job controller make for an admitted TrainJob: its JobSet (labels
    from the runtime patch), the JobSet's Job, and a pod per node."""
    name = tj["metadata"]["name"]
    built = trainer_builds(tj, trainjob.runtime())
    built["metadata"]["ownerReferences"] = [{"apiVersion": trainjob.RESOURCE.api_version, "kind": "TrainJob",
                                             "name": name, "uid": "tj", "controller": True}]
    built["spec"]["suspend"] = False
    emu.add(JOBSETS, built)
    [job] = jobset.job_templates(built)
    job["metadata"].update(labels={**job["metadata"]["labels"], jobset.NAME_LABEL: name}, ownerReferences=[
        {"apiVersion": jobset.API, "kind": "JobSet", "name": name, "uid": "js", "controller": True}])
    emu.add(JOBS, {**job, "status": {"active": nodes, "ready": nodes, "startTime": ts(20)}})
    for i in range(nodes):
        p = pod(name, "train", f"{name}-node-0-{i}-ab{i}cd", phase, i)
        p["spec"]["containers"] = [{"name": "gke-gcsfuse-sidecar", "image": "gcsfuse"}, {"name": "node", "image": "i"}]
        emu.add(PODS, p)


def test_submit_status_logs_and_cancel_a_trainjob(trainer_cluster, bucket):
    root, emu = bucket.url, trainer_cluster
    submit = ["submit", "train", "--dataset", "demo", "--nodes", "2", "--scheduler", "trainjob", "--run", RUN,
              "--queue", "a100"]
    result = CliRunner().invoke(app, ["--root", root, *submit])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert f"created TrainJob laclip/{RUN}" in result.output
    assert "kubectl get trainjobs.trainer.kubeflow.org,pods" in said(result)
    created = plain(emu.emu.objects[TRAINJOBS, NS, RUN])
    check_trainjob(created)

    def cli(*args):
        return said(CliRunner().invoke(app, ["--root", root, *args], env={"COLUMNS": "250"}))

    # Kueue holds it: its Workload is owned by the TrainJob
    emu.add(WORKLOADS, {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "Workload", "metadata": {
        "name": f"trainjob-{RUN}-1a2b3", "namespace": NS, "ownerReferences": [
            {"apiVersion": trainjob.RESOURCE.api_version, "kind": "TrainJob", "name": RUN, "uid": "tj"}]},
        "spec": {"queueName": "a100"}, "status": {"conditions": [
            {"type": "QuotaReserved", "status": "False", "message": "insufficient quota for nvidia.com/gpu"}]}})
    text = cli("status", RUN, "--no-store")
    assert "train: Suspended" in text and "waiting for Kueue admission in LocalQueue a100" in text
    assert "Kueue: insufficient quota for nvidia.com/gpu" in text
    assert "kubectl get trainjobs.trainer.kubeflow.org -n laclip" in text

    # admitted: Trainer's JobSet, its Job and two pods; they are the TrainJob's progress, not objects of their own
    tj = {**created, "spec": {**created["spec"], "suspend": False}, "metadata": {
        **created["metadata"], "creationTimestamp": ts(30)}, "status": {"jobsStatus": [
            {"name": "node", "ready": 1, "succeeded": 0, "failed": 0, "active": 1, "suspended": 0}],
            "trainerStatus": {"progressPercentage": 40, "lastUpdatedTime": ts(1)}}}
    emu.add(TRAINJOBS, tj)
    emu.add(WORKLOADS, {**plain(emu.emu.objects[WORKLOADS, NS, f"trainjob-{RUN}-1a2b3"]), "status": {
        "conditions": [{"type": "Admitted", "status": "True", "message": "The workload is admitted"}]}})
    made_by_trainer(emu, tj, 2)
    text = cli("status", RUN, "--no-store")
    assert "train: Running" in text and "TrainJob" in text and "1 of 1 job(s) ready; 40% done" in text
    assert "2 Running" in text and f"JobSet {RUN}" not in text and f"Job {RUN}-node-0" not in text
    listed = cli("status")
    assert RUN in listed and "TrainJob" in listed and "JobSet" not in listed
    assert "kubectl get jobs,jobsets.jobset.x-k8s.io,jobs.batch.volcano.sh,trainjobs.trainer.kubeflow.org" in listed

    # logs: node 1's pod, its trainer container (beside GKE's sidecar)
    result = CliRunner().invoke(app, ["--root", root, "logs", RUN, "--stage", "train", "--index", "1"])
    assert result.exit_code == 0, repr(result.exception)
    assert f"kubectl logs -n laclip {RUN}-node-0-1-ab1cd -c node" in said(result)
    assert f"step 2 of pod {RUN}-node-0-1-ab1cd" in result.output

    # finished: Trainer copies the JobSet's condition
    emu.add(TRAINJOBS, {**tj, "status": {"conditions": [
        {"type": "Complete", "status": "True", "reason": "AllJobsCompleted", "message": "jobset completed",
         "lastTransitionTime": ts(0)}]}})
    assert "train: Succeeded" in cli("status", RUN, "--no-store")

    # cancel: the TrainJob alone, in the foreground; Trainer's JobSet and its Job go with it
    result = CliRunner().invoke(app, ["--root", root, "cancel", RUN, "--yes"])
    assert result.exit_code == 0, repr(result.exception)
    assert f"deleted TrainJob/{RUN}" in said(result) and "trainjobs.trainer.kubeflow.org" in said(result)
    deletes = [r for r in emu.requests() if r.method.value.upper() == "DELETE"]
    assert [(r.resource, r.name) for r in deletes] == [(TRAINJOBS, RUN)]
    policy = deletes[0].params.get("propagationPolicy") or (deletes[0].data or {}).get("propagationPolicy")
    assert policy == "Foreground" and RUN not in emu.names(TRAINJOBS)


def test_a_cluster_without_trainer_says_what_to_install(cluster, bucket):
    result = CliRunner().invoke(app, ["--root", bucket.url, "submit", "train", "--dataset", "demo", "--nodes", "2",
                                      "--scheduler", "trainjob", "--run", RUN])
    message = str(result.exception)
    assert result.exit_code != 0 and "\n" not in message
    assert "the cluster does not serve trainjobs.trainer.kubeflow.org" in message
    assert "install Kubeflow Trainer v2.3 or later" in message and "manifests/components/trainer" in message
    cluster.add(JOBS, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {
        "name": "eval-x", "namespace": NS, "labels": labels("eval-x", "eval"), "creationTimestamp": ts(5)},
        "spec": {"template": {"spec": {"containers": [{"name": "eval", "image": "i"}]}}}, "status": {}})
    text = said(CliRunner().invoke(app, ["--root", bucket.url, "status"], env={"COLUMNS": "250"}))
    assert "eval-x" in text and "trainjobs" not in text  # kubectl would reject the kind


def test_a_role_without_trainjobs_still_shows_the_other_runs(trainer_cluster, caplog):
    """A Role applied before laclip created TrainJobs: listing them is forbidden; status and cancel of
    the rest still work, and a warning names what was skipped."""
    trainer_cluster.emu["list", TRAINJOBS] << 403
    trainer_cluster.add(JOBS, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {
        "name": "eval-y", "namespace": NS, "labels": labels("eval-y", "eval"), "creationTimestamp": ts(5)},
        "spec": {"template": {"spec": {"containers": [{"name": "eval", "image": "i"}]}}}, "status": {}})
    result = CliRunner().invoke(app, ["--root", "gs://b/x", "status"], env={"COLUMNS": "250"})
    assert result.exit_code == 0 and "eval-y" in said(result), repr(result.exception)
    assert "no right to list trainjobs.trainer.kubeflow.org in laclip" in caplog.text
    assert CliRunner().invoke(app, ["--root", "gs://b/x", "cancel", "eval-y", "--yes"]).exit_code == 0


def test_unknown_scheduler_names_the_backends():
    result = CliRunner().invoke(app, ["--root", "gs://b/x", "submit", "train", "--dataset", "cc12m",
                                      "--scheduler", "kubernetes", "--dry-run"])
    assert isinstance(result.exception, UsageError)
    assert str(result.exception) == "unknown --scheduler 'kubernetes': choose jobset, volcano, trainjob"

"""manifests/: `kubectl kustomize` renders; built-in objects pass the strict Kubernetes 1.33
schema; the Kueue and Volcano objects pass their vendored CRDs' schemas strictly (tests/crds/) and
fit what laclip renders; and the Role grants every request the CLI makes."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import get_args
from pathlib import Path

import pytest
import yaml

from laclip.config import DEFAULT_NAMESPACE, DEFAULT_SERVICE_ACCOUNT, Accelerator, ClusterOptions
from laclip_jobs.common import FLEX_START_QUEUE

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
KUEUE_KINDS = ("ResourceFlavor", "ClusterQueue", "LocalQueue", "AdmissionCheck", "ProvisioningRequestConfig",
               "Topology")
CUSTOM = {("kueue.x-k8s.io/v1beta1", k) for k in KUEUE_KINDS} | {("scheduling.volcano.sh/v1beta1", "Queue")}
CLUSTER_SCOPED = {"Namespace", "PriorityClass", "ResourceFlavor", "ClusterQueue", "Queue", "AdmissionCheck",
                  "ProvisioningRequestConfig", "Topology"}
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def kustomize(folder: Path, *flags: str) -> list[dict]:
    if not shutil.which("kubectl"):
        pytest.skip("kubectl is not installed")
    proc = subprocess.run(["kubectl", "kustomize", *flags, str(folder)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@pytest.fixture(scope="module")
def example():
    return kustomize(MANIFESTS / "overlays" / "example")


@pytest.fixture(scope="module")
def base():
    return kustomize(MANIFESTS / "base")


def by_kind(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def test_base_renders_the_cluster_side(base):
    kinds = sorted(o["kind"] for o in base)
    assert kinds == ["Namespace", "NetworkPolicy", "PriorityClass", "PriorityClass", "PriorityClass", "Role",
                     "RoleBinding", "ServiceAccount"]
    (ns,) = by_kind(base, "Namespace")
    (sa,) = by_kind(base, "ServiceAccount")
    assert ns["metadata"]["name"] == DEFAULT_NAMESPACE  # what the CLI submits to by default
    assert sa["metadata"]["name"] == DEFAULT_SERVICE_ACCOUNT and sa["metadata"]["namespace"] == DEFAULT_NAMESPACE
    assert sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].endswith(".iam.gserviceaccount.com")
    assert not sa.get("secrets") and not by_kind(base, "Secret")  # Workload Identity: no keys
    (netpol,) = by_kind(base, "NetworkPolicy")  # laclip pods take connections only from laclip pods
    assert netpol["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "laclip"}
    assert netpol["spec"]["ingress"] == [{"from": [{"podSelector": netpol["spec"]["podSelector"]}]}]


@pytest.mark.parametrize("which", ["base", "example"])
def test_builtin_objects_pass_the_strict_133_schema(which, request):
    import kubernetes_validate

    objs = request.getfixturevalue(which)
    checked = 0
    for obj in objs:
        if (obj["apiVersion"], obj["kind"]) in CUSTOM:
            continue
        kubernetes_validate.validate(obj, "1.33", strict=True)
        checked += 1
    assert checked >= 7


def test_strict_schema_rejects_a_typo():
    """The validation can fail: an unknown field in a Role is refused."""
    import kubernetes_validate

    bad = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "x"},
           "rules": [{"apiGroups": [""], "resource": ["pods"], "verbs": ["get"]}]}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.33", strict=True)


def test_scope_and_names(example):
    for obj in example:
        meta = obj["metadata"]
        assert DNS1123.match(meta["name"]) and len(meta["name"]) <= 63
        if obj["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in meta, f"{obj['kind']} {meta['name']} is cluster-scoped"
        else:
            assert meta["namespace"] == DEFAULT_NAMESPACE, obj["kind"]


@pytest.fixture(scope="module")
def with_topology(tmp_path_factory):
    """The example overlay plus components/kueue-topology, as a cluster with GKE's placement labels has it."""
    import os

    folder = tmp_path_factory.mktemp("overlay")
    (folder / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(MANIFESTS / "overlays" / "example", folder)],
        "components": [os.path.relpath(MANIFESTS / "components" / "kueue-topology", folder)]}))
    return kustomize(folder, "--load-restrictor", "LoadRestrictionsNone")  # the overlay lies outside the repo


@pytest.mark.parametrize("which", ["example", "with_topology"])
def test_custom_objects_pass_their_crds_strictly(which, request):
    """Every Kueue and Volcano object against its vendored CRD (unknown fields are errors)."""
    from tests import crd_schema

    objs = request.getfixturevalue(which)
    custom = [o for o in objs if (o["apiVersion"], o["kind"]) in CUSTOM]
    for obj in custom:
        crd_schema.validate(obj)
    assert {o["kind"] for o in custom} == set(KUEUE_KINDS) | {"Queue"}
    assert not [o for o in objs if (o["apiVersion"], o["kind"]) not in CUSTOM and "x-k8s.io" in o["apiVersion"]]


def queues(objs) -> dict[str, tuple[dict, list[dict]]]:
    """ClusterQueue name -> (the ClusterQueue, its flavors)."""
    flavors = {f["metadata"]["name"]: f for f in by_kind(objs, "ResourceFlavor")}
    return {cq["metadata"]["name"]: (cq, [flavors[fl["name"]] for g in cq["spec"]["resourceGroups"]
                                         for fl in g["flavors"]]) for cq in by_kind(objs, "ClusterQueue")}


def test_kueue_queues_admit_what_laclip_renders(example):
    """The quota covers every accelerator laclip pods can ask for, in Kueue's order rules; the
    LocalQueues are usable as --queue; every flavor is used by a ClusterQueue."""
    found = queues(example)
    assert set(found) == {"laclip", "laclip-flex"}
    for name, (cq, flavors) in found.items():
        accels = {f["spec"]["nodeLabels"]["cloud.google.com/gke-accelerator"] for f in flavors}
        for accel in accels:
            ClusterOptions(accelerator=accel)  # each flavor selects nodes that laclip pods can ask for
        assert accels == set(get_args(Accelerator)), name  # every --accelerator can be admitted
        assert cq["spec"]["queueingStrategy"] in ("StrictFIFO", "BestEffortFIFO")
        for group in cq["spec"]["resourceGroups"]:
            covered = group["coveredResources"]
            assert "nvidia.com/gpu" in covered
            for fl in group["flavors"]:
                assert [r["name"] for r in fl["resources"]] == covered  # Kueue requires the same order
    used = {f["metadata"]["name"] for _, flavors in found.values() for f in flavors}
    assert used == {f["metadata"]["name"] for f in by_kind(example, "ResourceFlavor")}
    local = {lq["metadata"]["name"]: lq["spec"]["clusterQueue"] for lq in by_kind(example, "LocalQueue")}
    assert local == {"laclip-a100": "laclip", FLEX_START_QUEUE: "laclip-flex"}
    for name in local:
        ClusterOptions(queue=name)  # usable as `--queue`


def test_flex_start_admission_check_fits_the_pods_laclip_renders(example):
    """`--flex-start` pods land in laclip-flex, whose admission check asks GKE's queued
    provisioning for the nodes, and whose flavors match the pods' node selector."""
    from laclip.train.config import preset
    from laclip_jobs.train import pod_templates, render

    (cq, flavors) = queues(example)["laclip-flex"]
    (check,) = by_kind(example, "AdmissionCheck")
    (config,) = by_kind(example, "ProvisioningRequestConfig")
    assert cq["spec"]["admissionChecks"] == [check["metadata"]["name"]]
    assert check["spec"]["controllerName"] == "kueue.x-k8s.io/provisioning-request"
    assert check["spec"]["parameters"] == {"apiGroup": "kueue.x-k8s.io", "kind": "ProvisioningRequestConfig",
                                           "name": config["metadata"]["name"]}
    assert config["spec"]["provisioningClassName"] == "queued-provisioning.gke.io"
    assert config["spec"]["managedResources"] == ["nvidia.com/gpu"]
    assert "admissionChecks" not in queues(example)["laclip"][0]["spec"]  # the plain queue provisions nothing
    for accel in get_args(Accelerator):
        cfg = preset("cc12m", run="r", root="gs://b/x", nodes="2", flex_start=True,
                     cluster=ClusterOptions(gpus=8, accelerator=accel))
        (js,) = render(cfg)
        assert js["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == FLEX_START_QUEUE
        selector = pod_templates(js)[0]["spec"]["nodeSelector"]
        # exactly one flex flavor fits the pods: Kueue assigns a flavor whose node labels the pods select
        fitting = [f for f in flavors if f["spec"]["nodeLabels"].items() <= selector.items()]
        assert len(fitting) == 1, (accel, selector)


def test_topology_levels_are_what_topology_aware_pods_name(example, with_topology):
    from laclip.train.config import DEFAULT_TOPOLOGY_LEVEL

    (topology,) = by_kind(example, "Topology")
    levels = [lv["nodeLabel"] for lv in topology["spec"]["levels"]]
    assert levels[0] == DEFAULT_TOPOLOGY_LEVEL and levels[-1] == "kubernetes.io/hostname"  # hostname: last only
    assert not [f for f in by_kind(example, "ResourceFlavor") if "topologyName" in f["spec"]]  # opt-in
    assert {f["spec"].get("topologyName") for f in by_kind(with_topology, "ResourceFlavor")} == \
        {topology["metadata"]["name"]}


def test_volcano_queue_shape(example):
    (queue,) = by_kind(example, "Queue")
    assert set(queue["spec"]) <= {"weight", "reclaimable", "capability", "guarantee", "deserved", "parent"}
    assert isinstance(queue["spec"]["weight"], int) and queue["spec"]["weight"] >= 1
    assert int(queue["spec"]["capability"]["nvidia.com/gpu"]) > 0


def test_priority_classes_are_usable(example):
    classes = by_kind(example, "PriorityClass")
    assert not any(pc.get("globalDefault") for pc in classes)  # never change other teams' pods
    names = {pc["metadata"]["name"]: pc for pc in classes}
    assert names["laclip-rewrite"]["preemptionPolicy"] == "Never"
    assert names["laclip-eval"]["value"] > names["laclip-train"]["value"] > names["laclip-rewrite"]["value"]


def test_overlay_replaces_the_placeholders(base, example):
    (sa,) = by_kind(example, "ServiceAccount")
    assert "PROJECT_ID" not in yaml.safe_dump(example)
    sa = by_kind(base, "ServiceAccount")[0]
    assert "PROJECT_ID" in sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
    (users,) = [b for b in by_kind(example, "RoleBinding") if b["metadata"]["name"] == "laclip-user"]
    assert users["subjects"][0]["name"] == "ml-team@example.com"


def granted(role: dict, group: str, resource: str, verb: str) -> bool:
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in role["rules"])


def test_role_is_least_privilege(base):
    (role,) = by_kind(base, "Role")
    text = yaml.safe_dump(role)
    assert "*" not in text  # no wildcards
    for res in ("secrets", "pods/exec", "roles", "rolebindings", "serviceaccounts", "nodes"):
        assert res not in text
    for rule in role["rules"]:
        assert not {"update", "patch", "escalate", "bind", "impersonate"} & set(rule["verbs"])


def test_runner_may_only_create_jobs(example, base):
    """The pods' account: no rights in the base; with the component, create Jobs and nothing else."""
    assert not [b for b in by_kind(base, "RoleBinding") if b["subjects"][0]["kind"] == "ServiceAccount"]
    (binding,) = [b for b in by_kind(example, "RoleBinding") if b["subjects"][0]["kind"] == "ServiceAccount"]
    assert binding["subjects"][0] == {"kind": "ServiceAccount", "name": DEFAULT_SERVICE_ACCOUNT,
                                      "namespace": DEFAULT_NAMESPACE}
    (role,) = [r for r in by_kind(example, "Role") if r["metadata"]["name"] == binding["roleRef"]["name"]]
    assert role["rules"] == [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create"]}]


def test_role_grants_every_request_the_cli_makes(base, trainer_cluster, demo_store, gcs_bucket):
    """Drive submit (every stage, and again: an object that exists is read to compare), status,
    logs and cancel against the emulator (a cluster that runs every backend's controller, Kubeflow
    Trainer's too), then check each request the CLI made against the Role."""
    from typer.testing import CliRunner

    from laclip.storage import open_store
    from laclip_cli.main import app

    from .conftest import JOBS, PODS, WORKLOADS
    from .test_ops_status import job, pod

    cluster = trainer_cluster
    run = "rewrite-demo-1122-0412-a3f9"
    cluster.add(JOBS, job(run, "rewrite", run, {"completions": 2, "completionMode": "Indexed"}, {"active": 1}))
    cluster.add(PODS, pod(run, "rewrite", f"{run}-0-aaaaa", "Running", 0))
    from .render import ROOT, STAGE_ARGS, registered_stages

    # A cluster submit of train first checks its inputs in the store: a bucket (fake-gcs-server) with the dataset.
    bucket = open_store(gcs_bucket)
    for path in demo_store.list("datasets/demo/"):
        bucket.write_bytes(path, demo_store.read_bytes(path))
    stage_args = {**STAGE_ARGS, "rewrite": STAGE_ARGS["rewrite"] + ["--num-shards", "4"],
                  "train": ["--dataset", "demo", "--nodes", "2", "--run", "train-demo-rbac"]}
    roots = {"train": gcs_bucket}
    runner = CliRunner()
    submits = [["--root", roots.get(stage, ROOT), "submit", stage, *stage_args[stage]]
               for stage in STAGE_ARGS if stage in registered_stages()]
    if "train" in registered_stages():  # every scheduler: a JobSet (the default), a Volcano Job, a TrainJob
        submits.append(["--root", gcs_bucket, "submit", "train", "--dataset", "demo", "--nodes", "2:8",
                        "--scheduler", "volcano", "--run", "train-demo-rbac-volcano"])
        submits.append(["--root", gcs_bucket, "submit", "train", "--dataset", "demo", "--nodes", "2",
                        "--scheduler", "trainjob", "--run", "train-demo-rbac-trainjob"])
    cluster.add(WORKLOADS, {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "Workload", "metadata": {
        "name": "jobset-train-demo-rbac-1a2b3", "namespace": "laclip", "ownerReferences": [
            {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "name": "train-demo-rbac", "uid": "u"}]},
        "spec": {"queueName": "laclip-flex"}, "status": {"admissionChecks": [
            {"name": "laclip-flex-start", "state": "Pending", "message": "Waiting for resources"}]}})
    watch = [["--root", ROOT, *args] for args in
             (["status"], ["status", run, "--no-store"], ["logs", run, "--stage", "rewrite"], ["cancel", run, "--yes"])]
    for args in submits + watch:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, repr(result.exception))
    again = runner.invoke(app, next(a for a in submits if "eval" in a))  # the same request: it stands
    assert again.exit_code == 0 and "already exists (the same request)" in again.stderr, again.output
    if "train" in registered_stages():  # another submission of that run (a new owner token): refused
        for resubmit in [a for a in submits if "train" in a]:  # the JobSet, the Volcano Job: each read to compare
            again = runner.invoke(app, resubmit)
            assert again.exit_code != 0 and "already exists and asks for something else" in str(again.exception)
        for args in (["status", "train-demo-rbac", "--no-store"], ["cancel", "train-demo-rbac", "--yes"]):
            result = runner.invoke(app, ["--root", ROOT, *args])  # a queued JobSet: its workload, then cancelled
            assert result.exit_code == 0, (args, repr(result.exception))
    (role,) = by_kind(base, "Role")
    verbs = {"GET": "get", "DELETE": "delete", "POST": "create"}
    seen = set()
    for req in cluster.requests():
        if req.resource is None:
            continue
        plural = req.resource.plural + (f"/{req.subresource}" if req.subresource else "")
        verb = verbs[str(req.method.value).upper()] if req.name or req.method.value.upper() != "GET" else "list"
        seen.add((req.resource.group, plural, verb))
        assert granted(role, req.resource.group, plural, verb), f"the Role lacks {verb} {req.resource.group}/{plural}"
    assert {("batch", "jobs", "list"), ("", "pods/log", "get"), ("batch", "jobs", "delete")} <= seen
    assert ("batch", "jobs", "get") in seen  # the second eval submit read the Job it found
    if "train" in registered_stages():
        assert {("batch.volcano.sh", "jobs", "create"), ("batch.volcano.sh", "jobs", "get")} <= seen
        assert {("jobset.x-k8s.io", "jobsets", v) for v in ("create", "get", "list", "delete")} <= seen
        assert {("trainer.kubeflow.org", "trainjobs", v) for v in ("create", "get", "list")} <= seen
        assert ("autoscaling.x-k8s.io", "provisioningrequests", "list") in seen  # a workload awaits its check
    # and no right to create anything the CLI never creates
    created = {(g, res) for r in role["rules"] if "create" in r["verbs"]
               for g in r["apiGroups"] for res in r["resources"]}
    made = {(g, res) for g, res, verb in seen if verb == "create"}
    if "train" not in registered_stages():
        made |= {("batch.volcano.sh", "jobs"), ("jobset.x-k8s.io", "jobsets"), ("trainer.kubeflow.org", "trainjobs")}
    assert created <= made, f"the Role grants create on {sorted(created - made)}, which the CLI never creates"

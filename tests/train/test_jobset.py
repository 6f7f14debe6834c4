"""The training run as a JobSet under Kueue (jobs/backends/jobset.py), beside TorchX's Volcano Job: CRD
schemas (strict), the Kubernetes 1.33 schema for its pod and Job templates, the failure policies
read against the messages Kubernetes writes, Kueue's flex-start and topology wiring, names that fit,
golden files for both schedulers, and the CLI."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from laclip.config import ClusterOptions
from laclip.errors import EXIT_PERMANENT, UsageError
from laclip.train.config import SPOT_JOB_RETRIES, TrainConfig, preset
from laclip_cli.main import app
from laclip_jobs.backends import jobset
from laclip_jobs.train import pod_templates, render
from tests import crd_schema

RUN = "train-laclip-cc12m-1122-0412-a3f9"
GOLDEN = Path(__file__).parent / "golden"


def cc12m(nodes="4", scheduler="jobset", cluster=None, **kw) -> TrainConfig:
    return preset("cc12m", run=RUN, rewrites="rw1", nodes=nodes, root="gs://bucket/laclip", owner="0123abcd",
                  scheduler=scheduler, cluster=ClusterOptions(gpus=8, **(cluster or {})), **kw)


def torchrun_args(pod) -> list[str]:
    """The pod's command line as bash would split it (the kubelet's `$$` -> `$` applied first)."""
    command = pod["spec"]["containers"][0]["command"]
    assert command[:2] == ["bash", "-c"]
    return shlex.split(command[2].replace("$$", "$"))


def validate_everything(obj: dict) -> None:
    """The object against its CRD (strictly); its pod templates (and a JobSet's Job templates)
    against the Kubernetes 1.33 schema, strictly."""
    crd_schema.validate(obj)
    for pod in pod_templates(obj):
        kubernetes_validate.validate(pod, "1.33", strict=True)
    if obj["kind"] == "JobSet":
        for job in jobset.job_templates(obj):
            kubernetes_validate.validate(job, "1.33", strict=True)


def test_jobset_runs_one_indexed_job_of_a_pod_per_node():
    (js,) = render(cc12m(cluster={"spot": True}))
    validate_everything(js)
    assert (js["apiVersion"], js["kind"], js["metadata"]["name"]) == ("jobset.x-k8s.io/v1alpha2", "JobSet", RUN)
    assert js["metadata"]["labels"]["laclip.dev/run"] == RUN and js["metadata"]["annotations"]["laclip.dev/request"]
    assert js["spec"]["network"] == {"enableDNSHostnames": True, "publishNotReadyAddresses": True, "subdomain": RUN}
    assert "suspend" not in js["spec"] and "kueue.x-k8s.io/queue-name" not in js["metadata"]["labels"]
    (rjob,) = js["spec"]["replicatedJobs"]
    job = rjob["template"]["spec"]
    assert rjob["name"] == "main" and rjob["replicas"] == 1
    assert (job["parallelism"], job["completions"], job["completionMode"], job["backoffLimit"]) == (4, 4, "Indexed", 0)
    assert js["spec"]["successPolicy"] == {"operator": "All", "targetReplicatedJobs": ["main"]}
    assert js["spec"]["ttlSecondsAfterFinished"] == 7 * 24 * 3600
    (pod,) = pod_templates(js)
    spec, (c,) = pod["spec"], pod["spec"]["containers"]
    assert pod["metadata"]["labels"]["laclip.dev/run"] == RUN and spec["restartPolicy"] == "Never"
    assert c["name"] == "train" and c["resources"]["limits"]["nvidia.com/gpu"] == "8"
    args = torchrun_args(pod)
    assert args[:3] == ["python", "-m", "laclip.train.launch"] and "torchrun" not in args
    assert args[args.index("--nnodes") + 1] == "4" and args[args.index("--nproc_per_node") + 1] == "8"
    assert args[args.index("--rdzv_backend") + 1] == "c10d" and args[args.index("--rdzv_id") + 1] == RUN
    # c10d at pod 0's stable DNS name; pod 0 hosts the store (bash computes is_host from the index)
    env = {e["name"]: e["value"] for e in c["env"]}
    assert args[args.index("--rdzv_endpoint") + 1] == "${LACLIP_RDZV_HOST:=localhost}:29500"
    assert env["LACLIP_RDZV_HOST"] == f"{RUN}-main-0-0.{RUN}"
    assert args[args.index("--rdzv_conf") + 1] == "is_host=$((JOB_COMPLETION_INDEX==0))"
    assert c["ports"] == [{"name": "c10d", "containerPort": 29500}]
    # the entrypoint gets the very config that was rendered
    assert TrainConfig.model_validate_json(args[args.index("--config") + 1]) == cc12m(cluster={"spot": True})


def test_both_schedulers_share_the_gke_patches():
    """The pods of the JobSet and of the Volcano Job differ only where the schedulers do."""
    def pod(scheduler):
        (obj,) = render(cc12m(nodes="2", scheduler=scheduler, cluster={"spot": True, "priority_class": "laclip-train"}))
        return pod_templates(obj)[0]["spec"]

    js, vc = pod("jobset"), pod("volcano")
    for key in ("nodeSelector", "tolerations", "serviceAccountName", "automountServiceAccountToken",
                "securityContext", "priorityClassName", "volumes"):
        assert js[key] == vc[key], key
    assert js["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100",
                                  "cloud.google.com/gke-spot": "true"}
    (jc,), (vcc,) = js["containers"], vc["containers"]
    for key in ("image", "resources", "securityContext", "volumeMounts"):
        assert jc[key] == vcc[key], key


# The Job's condition message when its podFailurePolicy fails it (Kubernetes' job controller), and
# the reason of a Job that failed otherwise.
EXIT = "Container {c} for pod laclip/{pod} failed with exit code {code} matching FailJob rule at index {i}"
DISRUPTED = "Pod laclip/{pod} has condition DisruptionTarget matching FailJob rule at index {i}"


def jobset_action(js: dict, reason: str, message: str) -> str:
    """What the JobSet controller does with a failed Job: its first failure-policy rule whose reasons
    hold the Job's reason and one of whose patterns matches the message (RE2 MatchString searches,
    as re.search does for these patterns); with none, RestartJobSet (counted against maxRestarts)."""
    for rule in js["spec"]["failurePolicy"]["rules"]:
        if reason in rule.get("onJobFailureReasons", [reason]) and \
                any(re.search(p, message) for p in rule.get("onJobFailureMessagePatterns", [".*"])):
            return rule["action"]
    return "RestartJobSet"


def pod_rule_index(js: dict, exit_code: int | None = None, condition: str | None = None) -> int | None:
    """The podFailurePolicy rule that matches a pod's end (first match wins), as the Job controller picks it."""
    rules = js["spec"]["replicatedJobs"][0]["template"]["spec"]["podFailurePolicy"]["rules"]
    for i, rule in enumerate(rules):
        codes = rule.get("onExitCodes")
        if codes and exit_code is not None and codes["operator"] == "In" and exit_code in codes["values"]:
            return i
        if condition and any(c["type"] == condition for c in rule.get("onPodConditions", [])):
            return i
    return None


def test_failure_policies_end_permanent_errors_and_do_not_count_disruptions():
    (js,) = render(cc12m())
    pod = f"{RUN}-main-0-2-x7k2q"
    permanent = pod_rule_index(js, exit_code=EXIT_PERMANENT)
    assert jobset_action(js, "PodFailurePolicy", EXIT.format(c="train", pod=pod, code=EXIT_PERMANENT,
                                                              i=permanent)) == "FailJobSet"
    disrupted = pod_rule_index(js, condition="DisruptionTarget")  # a Spot reclaim, a preemption, a drain
    assert jobset_action(js, "PodFailurePolicy", DISRUPTED.format(pod=pod, i=disrupted)) == \
        "RestartJobSetAndIgnoreMaxRestarts"
    # a crash (exit 1, OOM 137): no pod rule, the Job's backoffLimit 0 fails it; the gang restarts, counted
    assert pod_rule_index(js, exit_code=1) is None and pod_rule_index(js, exit_code=137) is None
    assert jobset_action(js, "BackoffLimitExceeded", "Job has reached the specified backoff limit") == "RestartJobSet"
    # the patterns tell exit code 3 from 30, and rule 0 from rule 10
    assert jobset_action(js, "PodFailurePolicy", EXIT.format(c="train", pod=pod, code=30, i=0)) == "RestartJobSet"
    assert jobset_action(js, "PodFailurePolicy", EXIT.format(c="train", pod=pod, code=3, i=10)) == "RestartJobSet"
    rule = js["spec"]["replicatedJobs"][0]["template"]["spec"]["podFailurePolicy"]["rules"][permanent]
    assert rule["onExitCodes"]["containerName"] == "train"  # not a sidecar's exit code (GKE's gcsfuse)
    policy = js["spec"]["failurePolicy"]
    assert policy["restartStrategy"] == "BlockingRecreate"  # the old gang is gone before the new one meets
    assert policy["maxRestarts"] == 3
    assert render(cc12m(cluster={"spot": True}))[0]["spec"]["failurePolicy"]["maxRestarts"] == SPOT_JOB_RETRIES
    assert render(cc12m(max_job_retries=7))[0]["spec"]["failurePolicy"]["maxRestarts"] == 7


def test_queue_flex_start_and_topology():
    (js,) = render(cc12m(cluster={"queue": "a100"}))
    assert js["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "a100" and js["spec"]["suspend"] is True
    # the JobSet's own Jobs are not queued again: Kueue admits the JobSet as one workload
    assert "kueue.x-k8s.io/queue-name" not in js["spec"]["replicatedJobs"][0]["template"]["metadata"]["labels"]
    (flex,) = render(cc12m(flex_start=True, flex_start_max_run_s=86400, topology="required"))
    validate_everything(flex)
    assert flex["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "laclip-flex" and flex["spec"]["suspend"]
    assert flex["metadata"]["annotations"]["provreq.kueue.x-k8s.io/maxRunDurationSeconds"] == "86400"
    (pod,) = pod_templates(flex)
    assert pod["spec"]["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100",
                                           "cloud.google.com/gke-queued": "true"}
    assert {"key": "cloud.google.com/gke-queued", "operator": "Equal", "value": "true",
            "effect": "NoSchedule"} in pod["spec"]["tolerations"]
    assert pod["metadata"]["annotations"] == {
        "kueue.x-k8s.io/podset-required-topology": "cloud.google.com/gce-topology-block"}
    (top,) = render(cc12m(cluster={"queue": "a100"}, topology="preferred", topology_level="kubernetes.io/hostname"))
    assert pod_templates(top)[0]["metadata"]["annotations"] == {
        "kueue.x-k8s.io/podset-preferred-topology": "kubernetes.io/hostname"}
    assert "provreq.kueue.x-k8s.io/maxRunDurationSeconds" not in (top["metadata"].get("annotations") or {})


@pytest.mark.parametrize("values, message", [
    (dict(scheduler="volcano", flex_start=True), "--flex-start needs --scheduler jobset"),
    (dict(scheduler="volcano", topology="preferred", cluster={"queue": "q"}), "--topology needs --scheduler jobset"),
    (dict(flex_start=True, cluster={"spot": True}), "--flex-start and --spot exclude each other"),
    (dict(flex_start=True, cluster={"gpus": 0}), "--flex-start provisions GPU nodes"),
    (dict(topology="preferred"), "--topology needs --queue"),
    (dict(topology="required", topology_level="Not A Label", cluster={"queue": "q"}), "is not a node label key"),
])
def test_kueue_options_that_cannot_work_are_refused(values, message):
    result = CliRunner().invoke(app, ["--root", "gs://b/x", "submit", "train", "--dataset", "cc12m",
                                      *[a for k, v in values.items() if k != "cluster"
                                        for a in ("--set", f"{k}={v}")],
                                      *[a for k, v in values.get("cluster", {}).items()
                                        for a in ("--set", f"cluster.{k}={str(v).lower()}")], "--dry-run"])
    assert isinstance(result.exception, UsageError) and message in str(result.exception), result.output


def test_elastic_nodes_are_for_volcano():
    with pytest.raises(UsageError, match=r"--nodes 2:8 is elastic, and a JobSet runs a fixed gang.*--nodes 8"):
        render(cc12m(nodes="2:8"))
    (vjob,) = render(cc12m(nodes="2:8", scheduler="volcano"))  # Volcano keeps torchrun's elastic membership
    assert [t["minAvailable"] for t in vjob["spec"]["tasks"]] == [1, 1] + [0] * 6
    (js,) = render(cc12m(nodes="8:8"))
    assert js["spec"]["replicatedJobs"][0]["template"]["spec"]["parallelism"] == 8


def pod_names(obj: dict) -> list[str]:
    """The longest pod name each scheduler derives: JobSet <jobset>-<rjob>-<job>-<pod> plus the Job
    controller's 5 random characters; Volcano <job>-<task>-<index>."""
    name = obj["metadata"]["name"]
    if obj["kind"] == "JobSet":
        return [f"{name}-{r['name']}-{r['replicas'] - 1}-{r['template']['spec']['parallelism'] - 1}-abcde"
                for r in obj["spec"]["replicatedJobs"]]
    return [f"{name}-{t['name']}-{t['replicas'] - 1}" for t in obj["spec"]["tasks"]]


DATASET_40 = "laion-aesthetics-v2-6plus-english-subset"


@pytest.mark.parametrize("scheduler", ["jobset", "volcano"])
@pytest.mark.parametrize("nodes", ["1", "4", "128"])
def test_names_fit_for_a_40_character_dataset(scheduler, nodes):
    """The CLI's automatic run id fits every pod name the scheduler derives; a --run one character
    longer than the longest that fits is refused, naming the limit, and that longest one renders."""
    from laclip_cli.stage import Context
    from laclip_cli.stages.train import STAGE

    assert len(DATASET_40) == 40
    ctx = Context(root="gs://b/x", local=False, dry_run=True, kube_context=None, options={})
    cfg = STAGE.build(STAGE, {"dataset": DATASET_40, "rewrites": "r", "nodes": nodes, "scheduler": scheduler}, [], ctx)
    assert cfg.run.startswith("train-laclip-laion-aesthetics")
    (obj,) = render(cfg)
    assert max(map(len, pod_names(obj))) <= 63, pod_names(obj)
    room = 63 - (max(map(len, pod_names(obj))) - len(cfg.run))
    result = CliRunner().invoke(app, ["--root", "gs://b/x", "submit", "train", "--dataset", DATASET_40, "--nodes",
                                      nodes, "--scheduler", scheduler, "--run", "r" * (room + 1), "--dry-run"])
    assert isinstance(result.exception, UsageError), result.output
    assert f"at most {room} characters" in str(result.exception) and "limit of 63" in str(result.exception)
    (longest,) = render(cfg.model_copy(update={"run": "r" * room}))
    assert max(map(len, pod_names(longest))) == 63


def test_a_jobset_run_id_starts_with_a_letter():
    with pytest.raises(UsageError, match="must start with a letter"):
        render(cc12m().model_copy(update={"run": "1st-run"}))
    assert render(cc12m(scheduler="volcano").model_copy(update={"run": "1st-run"}))  # Volcano takes it


def test_the_strict_crd_check_fails_on_a_typo():
    """An unknown field anywhere fails, as the API server's strict field validation refuses it."""
    (js,) = render(cc12m())
    (vjob,) = render(cc12m(nodes="2", scheduler="volcano"))
    for obj, path, typo in [(js, ["spec", "network"], "enableDNSHostname"),
                            (js, ["spec", "replicatedJobs", 0], "replica"),
                            (js, ["spec", "replicatedJobs", 0, "template", "spec", "podFailurePolicy", "rules", 0],
                             "onExitCode"),
                            (js, ["spec", "replicatedJobs", 0, "template", "spec", "template", "spec"], "nodeSelecter"),
                            (vjob, ["spec", "tasks", 0], "polices")]:
        bad = json.loads(json.dumps(obj))
        target = bad
        for key in path:
            target = target[key]
        target[typo] = True
        with pytest.raises(jsonschema.ValidationError, match=f"'{typo}' was unexpected"):
            crd_schema.validate(bad)
    bad = json.loads(json.dumps(js))
    bad["spec"]["failurePolicy"]["rules"][0]["action"] = "FailJobset"  # an enum
    with pytest.raises(jsonschema.ValidationError, match="is not one of"):
        crd_schema.validate(bad)


@pytest.mark.parametrize("scheduler", ["jobset", "volcano"])
def test_render_matches_golden(scheduler):
    (obj,) = render(cc12m(nodes="2", scheduler=scheduler, cluster={"queue": "a100"}))
    validate_everything(obj)
    golden = GOLDEN / f"cc12m-{scheduler}.yaml"
    if os.environ.get("LACLIP_UPDATE_GOLDEN"):  # regenerate on purpose, then review the diff
        golden.write_text(yaml.safe_dump(obj, sort_keys=False, width=120))
    assert obj == yaml.safe_load(golden.read_text())


def test_cli_dry_run_prints_the_jobset_for_a100_under_kueue():
    """The issue's own example: 4 pods of 8 GPUs on the A100 pool, queued in Kueue, torchrun's c10d
    rendezvous at pod 0's DNS name; the cost estimate on stderr."""
    result = CliRunner().invoke(app, ["--root", "gs://bucket/x", "submit", "train", "--dataset", "cc12m",
                                      "--rewrites", "ID", "--model", "ViT-B-16", "--nodes", "4", "--scheduler",
                                      "jobset", "--queue", "a100", "--dry-run"])
    assert result.exit_code == 0, result.output
    (js,) = [d for d in yaml.safe_load_all(result.stdout) if d]
    validate_everything(js)
    assert js["kind"] == "JobSet" and js["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "a100"
    job = js["spec"]["replicatedJobs"][0]["template"]["spec"]
    assert job["parallelism"] == job["completions"] == 4
    (pod,) = pod_templates(js)
    assert pod["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] == "8"
    assert pod["spec"]["nodeSelector"]["cloud.google.com/gke-accelerator"] == "nvidia-tesla-a100"
    args = torchrun_args(pod)
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    name = js["metadata"]["name"]
    assert args[args.index("--rdzv_backend") + 1] == "c10d" and env["LACLIP_RDZV_HOST"] == f"{name}-main-0-0.{name}"
    assert json.loads(args[args.index("--config") + 1])["model"] == "ViT-B-16"
    assert "estimate: train cc12m on 32 GPU(s)" in result.stderr
    # JobSet is the default; --flex-start and --topology render Kueue's wiring
    default = CliRunner().invoke(app, ["--root", "gs://bucket/x", "submit", "train", "--dataset", "cc12m",
                                       "--nodes", "4", "--flex-start", "--topology", "preferred", "--dry-run"])
    assert default.exit_code == 0, default.output
    (flex,) = [d for d in yaml.safe_load_all(default.stdout) if d]
    assert flex["kind"] == "JobSet" and flex["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "laclip-flex"
    assert pod_templates(flex)[0]["metadata"]["annotations"]["kueue.x-k8s.io/podset-preferred-topology"] == \
        "cloud.google.com/gce-topology-block"


def test_local_runs_the_app_defs_torchrun_whatever_the_scheduler():
    """--local never renders a JobSet or a Volcano Job: the AppDef's own one-node torchrun command,
    the same for both schedulers (and an elastic --nodes is no concern of a local run)."""
    from laclip_jobs.train import app_def

    def local_command(scheduler, nodes):
        cfg = preset("demo", run="local-run", root="/tmp/store", scheduler=scheduler, nodes=nodes, owner="o")
        (role,) = app_def(cfg, local=True).roles
        shell = role.args[-1]
        return shell[:shell.index("--config")]

    command = local_command("jobset", "2:8")
    assert command == local_command("volcano", "1")
    assert "--nnodes 1 " in command and "--rdzv_endpoint localhost:0" in command and "rdzv_conf" not in command

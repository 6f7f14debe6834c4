"""Kubernetes objects of one laclip run as the API returns them, for the status tests."""

from __future__ import annotations

import datetime as dt

NS = "laclip"
REWRITE = "rewrite-demo-1122-0412-a3f9"
TRAIN = "train-demo-1122-0500-bb01"
EVAL = "eval-demo-1122-0600-cc02"
QUEUED = "rewrite-demo-1122-0700-dd03"
REWRITE_ID = "vllm-llama-7b-31f31af8d1"  # where the rewrite writes: rewrites/<dataset>/<rewrite-id>/
RESULT_ID = "5d41402abc4b"  # names the settings of an eval result (laclip.eval.results.result_id)
NOW = dt.datetime.now(dt.timezone.utc)


def ts(minutes_ago: float) -> str:
    """A timestamp relative to the moment the object is built (not to module import)."""
    now = dt.datetime.now(dt.timezone.utc)
    return (now - dt.timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def labels(run, stage, dataset="demo", **extra):
    return {"app.kubernetes.io/name": "laclip", "app.kubernetes.io/component": stage,
            "app.kubernetes.io/managed-by": "laclip", "laclip.dev/run": run, "laclip.dev/dataset": dataset, **extra}


def job(run, stage, name, spec=None, status=None, extra_labels=None, annotations=None):
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": NS, "labels": labels(run, stage, **(extra_labels or {})),
                         "annotations": annotations or {}, "creationTimestamp": ts(60), "uid": f"uid-{name}"},
            "spec": {"template": {"spec": {"containers": [{"name": stage, "image": "img"}],
                                           "restartPolicy": "Never"}}, **(spec or {})},
            "status": status or {}}


def pod(run, stage, name, phase, index=None, status=None, minutes_ago=30):
    lab = labels(run, stage)
    if index is not None:
        lab["batch.kubernetes.io/job-completion-index"] = str(index)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": lab, "creationTimestamp": ts(minutes_ago)},
            "spec": {"containers": [{"name": "gke-gcsfuse-sidecar", "image": "gcsfuse"},  # GKE injects it
                                    {"name": stage, "image": "img"}]},
            "status": {"phase": phase, **(status or {})}}


def cstatus(state, name="rewrite"):
    return {"name": name, "state": state, "image": "bad/rewrite:0.1.0", "imageID": "", "ready": False,
            "restartCount": 0}


def event(name, kind, reason, message, type_="Warning"):
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{name}.{reason.lower()}", "namespace": NS},
            "involvedObject": {"kind": kind, "name": name, "namespace": NS},
            "reason": reason, "message": message, "type": type_, "lastTimestamp": ts(1)}


UNSCHEDULABLE = "0/4 nodes are available: 4 Insufficient nvidia.com/gpu. preemption: 0/4 nodes are available"

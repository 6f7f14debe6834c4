"""What every rendered object shares: names, labels, GKE scheduling and pod security."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from typing import Any

import yaml

from laclip.kube import QUEUE_LABEL, kubelet_literal, stamp  # noqa: F401  (renderers import them from here)
from laclip.config import ClusterOptions, default_image
from laclip.errors import EXIT_PERMANENT, UsageError  # noqa: F401

APP = "laclip"
RUN_LABEL = "laclip.dev/run"
DATASET_LABEL = "laclip.dev/dataset"
COMPONENT_LABEL = "app.kubernetes.io/component"
GPU_RESOURCE = "nvidia.com/gpu"
ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
SPOT_LABEL = "cloud.google.com/gke-spot"
# GKE flex-start with queued provisioning: the nodes of such a pool carry this label and a
# NoSchedule taint of the same key (GKE's xpk selects them the same way).
QUEUED_LABEL = "cloud.google.com/gke-queued"
# Kueue: the LocalQueue of manifests/components/kueue whose ClusterQueue has the flex-start admission
# check; pod-set annotations for topology-aware scheduling; ProvisioningRequest parameters.
FLEX_START_QUEUE = "laclip-flex"
TOPOLOGY_ANNOTATIONS = {"preferred": "kueue.x-k8s.io/podset-preferred-topology",
                        "required": "kueue.x-k8s.io/podset-required-topology"}
MAX_RUN_ANNOTATION = "provreq.kueue.x-k8s.io/maxRunDurationSeconds"
RUN_AS_USER = 1000  # the non-root user the images create

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def check_name(name: str, what: str = "name", limit: int = 63) -> str:
    """Fail early, with the rule, on names the API server would reject (RFC 1123 label)."""
    if len(name) > limit:
        raise UsageError(f"{what} {name!r} is {len(name)} characters long; Kubernetes allows at most {limit}")
    if not _DNS_LABEL.fullmatch(name):  # fullmatch: `$` alone would let a trailing newline in
        raise UsageError(
            f"{what} {name!r} is not a valid Kubernetes name: use lower-case letters, digits and '-', "
            "starting and ending with a letter or digit (RFC 1123)"
        )
    return name


def check_subdomain(name: str, what: str) -> str:
    """Names Kubernetes checks as DNS subdomains (PriorityClass, ServiceAccount, LocalQueue): dots allowed."""
    if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        raise UsageError(f"{what} {name!r} is not a valid Kubernetes name: at most 253 lower-case letters, digits, "
                         "'-' and '.', each dot-separated part starting and ending with a letter or digit")
    return name


def check_label_value(value: str, what: str) -> str:
    if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
        raise UsageError(
            f"{what} {value!r} cannot be a Kubernetes label value: at most 63 characters of "
            "letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
        )
    return value


def new_run_id(stage: str, dataset: str, now: dt.datetime | None = None, suffix: str | None = None,
               limit: int = 55) -> str:
    """A readable, unique run id such as `rewrite-cc12m-1122-0412-a3f9`, at most `limit` characters
    (the stage and dataset part is cut short; the time and random part stay whole)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    suffix = suffix or secrets.token_hex(2)
    tail = f"-{now:%m%d-%H%M}-{suffix}"
    run = f"{stage}-{dataset}"[:max(1, min(40, limit - len(tail)))].rstrip("-") + tail
    return check_name(run, "run id", max(limit, len(tail) + 1))


def labels(component: str, run: str, dataset: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": APP,
        COMPONENT_LABEL: component,
        "app.kubernetes.io/managed-by": APP,
        RUN_LABEL: check_label_value(run, "run id"),
        DATASET_LABEL: check_label_value(dataset, "dataset name"),
    }


def object_labels(component: str, run: str, dataset: str, cluster: ClusterOptions) -> dict[str, str]:
    """Labels for the top-level object: the pod labels plus the Kueue queue when asked."""
    out = labels(component, run, dataset)
    if cluster.queue:
        out[QUEUE_LABEL] = check_label_value(check_subdomain(cluster.queue, "Kueue LocalQueue name"),
                                             "Kueue LocalQueue name")
    return out


def batch_job(component: str, name: str, run: str, dataset: str, cluster: ClusterOptions,
              annotations: dict[str, str], spec: dict[str, Any]) -> dict[str, Any]:
    """A batch/v1 Job with laclip's metadata (the Indexed Jobs of rewrite, import, eval and fetch)."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": check_name(cluster.namespace, "namespace"),
            "labels": object_labels(component, run, dataset, cluster),
            "annotations": annotations,
        },
        "spec": spec,
    }


def image_for(component: str, cluster: ClusterOptions) -> str:
    if cluster.image:
        return cluster.image
    from laclip.config import DEFAULT_REGISTRY, check_image

    image = default_image(component)
    if image.startswith(DEFAULT_REGISTRY + "/"):  # the placeholder: shown by --dry-run, refused at submit
        return image
    try:
        return check_image(image)
    except ValueError as exc:  # $LACLIP_REGISTRY or $LACLIP_IMAGE_TAG is not what images/build.sh pushed
        raise UsageError(f"$LACLIP_REGISTRY / $LACLIP_IMAGE_TAG give image {exc}; fix them or pass --image") from None


def check_images_configured(objects: list[dict[str, Any]]) -> None:
    """Refuse to create pods that would pull from the placeholder registry (ImagePullBackOff)."""
    from laclip.config import DEFAULT_REGISTRY

    def images(node: Any):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "image" and isinstance(value, str):
                    yield value
                else:
                    yield from images(value)
        elif isinstance(node, list):
            for value in node:
                yield from images(value)

    placeholders = sorted({i for obj in objects for i in images(obj) if i.startswith(DEFAULT_REGISTRY + "/")})
    if placeholders:
        raise UsageError(f"image {placeholders[0]} is the placeholder registry: set LACLIP_REGISTRY to where "
                         "images/build.sh pushed the images (us-docker.pkg.dev/PROJECT/laclip) or pass --image")


def node_scheduling(cluster: ClusterOptions, flex_start: bool = False) -> dict[str, Any]:
    """nodeSelector and tolerations for GKE GPU pools (and Spot VMs, or a flex-start pool created
    with queued provisioning, when asked)."""
    selector: dict[str, str] = {}
    tolerations: list[dict[str, str]] = []
    if cluster.gpus > 0:
        selector[ACCELERATOR_LABEL] = cluster.accelerator
        tolerations.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    if cluster.spot:
        selector[SPOT_LABEL] = "true"
        tolerations.append({"key": SPOT_LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"})
    if flex_start:
        selector[QUEUED_LABEL] = "true"
        tolerations.append({"key": QUEUED_LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"})
    out: dict[str, Any] = {}
    if selector:
        out["nodeSelector"] = selector
    if tolerations:
        out["tolerations"] = tolerations
    return out


def resources(cluster: ClusterOptions) -> dict[str, Any]:
    req: dict[str, str] = {"cpu": cluster.cpu, "memory": cluster.memory}
    lim: dict[str, str] = {"memory": cluster.memory}
    if cluster.gpus > 0:
        req[GPU_RESOURCE] = str(cluster.gpus)
        lim[GPU_RESOURCE] = str(cluster.gpus)
    return {"requests": req, "limits": lim}


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }


def scratch_volumes(cluster: ClusterOptions) -> tuple[list[dict], list[dict]]:
    """A memory-backed /dev/shm for data-loader workers and NCCL, and a writable /tmp."""
    volumes = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": cluster.shm}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "tmp", "mountPath": "/tmp"}]
    return volumes, mounts


def apply_gke_pod_spec(spec: dict[str, Any], cluster: ClusterOptions, flex_start: bool = False) -> dict[str, Any]:
    """Patch a pod spec in place for GKE: scheduling, identity, security, scratch space."""
    spec.update(node_scheduling(cluster, flex_start))
    spec["serviceAccountName"] = check_subdomain(cluster.service_account, "service account")
    spec["automountServiceAccountToken"] = True  # Workload Identity exchanges this token for GCP credentials
    spec["securityContext"] = pod_security_context()
    if cluster.priority_class:
        spec["priorityClassName"] = check_subdomain(cluster.priority_class, "priority class")
    volumes, mounts = scratch_volumes(cluster)
    names = {v["name"] for v in spec.get("volumes", [])}
    spec.setdefault("volumes", []).extend(v for v in volumes if v["name"] not in names)
    for container in spec.get("containers", []):
        have = {m["mountPath"] for m in container.get("volumeMounts", [])}
        container.setdefault("volumeMounts", []).extend(m for m in mounts if m["mountPath"] not in have)
        container["securityContext"] = container_security_context()
    return spec


def as_json(value: Any) -> Any:
    """kubernetes client models (what TorchX renders) as the API's JSON: camelCase keys, no nulls."""
    if isinstance(value, list):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items() if v is not None}
    if hasattr(value, "openapi_types") and hasattr(value, "attribute_map"):
        return {value.attribute_map[k]: as_json(getattr(value, k)) for k in value.openapi_types
                if getattr(value, k) is not None}
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value


def dump_yaml(objects: list[dict[str, Any]]) -> str:
    """Objects as one multi-document YAML stream, keys in the order they were built."""
    return yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False, width=120)


def base_env(root: str, run: str) -> list[dict[str, str]]:
    """Environment every laclip container gets. HOME and caches point at the writable /tmp
    because the root filesystem is read-only; logs are JSON lines for Cloud Logging. The
    kubelet expands `$(VAR)` in env values too: user text goes in as kubelet_literal."""
    return [
        {"name": "LACLIP_ROOT", "value": kubelet_literal(root)},
        {"name": "LACLIP_RUN", "value": run},
        {"name": "LACLIP_LOG_FORMAT", "value": "json"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "HOME", "value": "/tmp"},
        {"name": "XDG_CACHE_HOME", "value": "/tmp/.cache"},
    ]

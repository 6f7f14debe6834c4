"""The one module that talks to a Kubernetes API server (the `kubernetes` client): the CLI's
submit, status, logs and cancel, and a training pod asking for its evaluations.

Credentials are resolved in one place, `connect`, like kubectl: $KUBECONFIG or ~/.kube/config
when there is one, else the pod's ServiceAccount (in-cluster). Objects go in and come back as
plain dicts (the API's JSON), so the pure logic of laclip_jobs reads them.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable

from laclip.errors import LaclipError, NotFound, UsageError

log = logging.getLogger("laclip.cluster")

VOLCANO = ("batch.volcano.sh", "v1alpha1", "jobs")
JOBSET = ("jobset.x-k8s.io", "v1alpha2", "jobsets")
KUEUE_WORKLOADS = ("kueue.x-k8s.io", "v1beta1", "workloads")
KUEUE_PROVISIONING = ("autoscaling.x-k8s.io", "v1", "provisioningrequests")
# What a rendered object asks for (laclip_jobs.common.finish): a second create of the same name
# is harmless when this matches, and refused when it does not.
REQUEST_ANNOTATION = "laclip.dev/request"
# The custom resources laclip creates, and what to install when a cluster does not serve one.
CUSTOM_KINDS = {
    ("batch.volcano.sh/v1alpha1", "Job"): (VOLCANO, "Volcano Job", "install Volcano "
                                           "(helm install volcano volcano-sh/volcano -n volcano-system)"),
    ("jobset.x-k8s.io/v1alpha2", "JobSet"): (JOBSET, "JobSet", "install JobSet v0.10 or later (kubectl apply "
                                             "--server-side -f https://github.com/kubernetes-sigs/jobset/releases/"
                                             "download/v0.12.0/manifests.yaml)"),
}


def kubelet_literal(value: str) -> str:
    """`value` as a command, args or env element that reaches the process unchanged. The kubelet
    expands `$(NAME)` to the value of env var NAME and turns `$$` into `$`, so a user string with
    a `$` must have each one doubled (TorchX's own `${macro}` pass needs its own)."""
    return value.replace("$", "$$")


def stamp(obj: dict) -> dict:
    """Record what a rendered object asks for (a digest of its spec) in its annotations."""
    from laclip.identity import digest

    obj["metadata"].setdefault("annotations", {})[REQUEST_ANNOTATION] = digest(obj["spec"], 16)
    return obj


class ClusterError(LaclipError):
    """The API server cannot be reached, or refused the request."""


def connect(context: str | None = None):
    """An ApiClient for the kubeconfig's current context (or `context`), else the pod's own
    ServiceAccount when running in a cluster."""
    import os

    import yaml
    from kubernetes import client, config

    try:
        # The client reads $KUBECONFIG once at import; read it now so the current value counts.
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"), context=context)
    except (yaml.YAMLError, IsADirectoryError, PermissionError) as exc:  # a file there, but unreadable
        raise ClusterError(f"cannot read the kubeconfig ({' '.join(str(exc).split())}); fix the file "
                           "or point $KUBECONFIG at another") from None
    except (config.ConfigException, FileNotFoundError, TypeError) as exc:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            raise ClusterError(
                f"no Kubernetes cluster configured ({exc}); point kubectl at your cluster first, e.g. "
                "`gcloud container clusters get-credentials CLUSTER --region REGION`, or set $KUBECONFIG"
            ) from None
    return client.ApiClient()


def _translate(fn: Callable) -> Callable:
    """API and connection errors become messages that name the object and the fix."""

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(self, *args, **kwargs)
        except ApiException as exc:
            what = f"{fn.__name__.replace('_', ' ')} {' '.join(map(str, args))}".strip()
            if exc.status == 403:
                raise ClusterError(
                    f"{what}: forbidden in namespace {self.namespace!r}; apply manifests/ (Role laclip-user) "
                    "or ask for rights to jobs, pods, pods/log and events"
                ) from None
            if exc.status == 404:
                raise NotFound(f"{what}: not found in namespace {self.namespace!r}") from None
            raise ClusterError(f"{what}: the API server answered {exc.status} {exc.reason}") from None
        except HTTPError as exc:
            raise ClusterError(f"cannot reach the Kubernetes API server at {self.host}: {exc}") from None

    return wrapper


class Cluster:
    """Read, stream and delete the objects of laclip runs in one namespace."""

    def __init__(self, api_client, namespace: str):
        from kubernetes import client

        self.api = api_client
        self.namespace = namespace
        self.host = api_client.configuration.host
        self.core = client.CoreV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.optional = {KUEUE_WORKLOADS, KUEUE_PROVISIONING}  # nice to have: a 403 on these skips them
        self.warned: set = set()
        self.absent: set = set()  # CRDs this cluster does not serve (404)

    @property
    def has_volcano(self) -> bool:
        """False once a Volcano list answered 404: kubectl commands naming its kind would fail."""
        return VOLCANO not in self.absent

    @property
    def has_jobset(self) -> bool:
        """False once a JobSet list answered 404 (the JobSet CRD is not installed)."""
        return JOBSET not in self.absent

    def _plain(self, obj: Any) -> dict:
        return self.api.sanitize_for_serialization(obj)

    def _custom_list(self, crd: tuple[str, str, str], selector: str | None) -> list[dict]:
        """Custom objects, or [] when the CRD is not installed (Volcano and Kueue are optional)."""
        from kubernetes.client.exceptions import ApiException

        try:
            found = self.custom.list_namespaced_custom_object(*crd[:2], self.namespace, crd[2],
                                                              label_selector=selector or "")
        except ApiException as exc:
            if exc.status == 404:
                self.absent.add(crd)
                return []
            if exc.status == 403 and crd in self.optional:
                if crd not in self.warned:  # status still works from Jobs and pods; say what is missing
                    self.warned.add(crd)
                    log.warning("no right to list %s.%s in %s; skipping them (apply manifests/ for the "
                                "laclip-user Role)", crd[2], crd[0], self.namespace)
                return []
            raise
        return found.get("items", [])

    @_translate
    def jobs(self, selector: str) -> list[dict]:
        return [self._plain(j) for j in self.batch.list_namespaced_job(self.namespace, label_selector=selector).items]

    @_translate
    def volcano_jobs(self, selector: str) -> list[dict]:
        return self._custom_list(VOLCANO, selector)

    @_translate
    def jobsets(self, selector: str) -> list[dict]:
        return self._custom_list(JOBSET, selector)

    @_translate
    def workloads(self) -> list[dict]:
        return self._custom_list(KUEUE_WORKLOADS, None)

    @_translate
    def provisioning_requests(self) -> list[dict]:
        """The cluster autoscaler's ProvisioningRequests (Kueue makes one per flex-start workload)."""
        return self._custom_list(KUEUE_PROVISIONING, None)

    @_translate
    def pods(self, selector: str) -> list[dict]:
        return [self._plain(p) for p in self.core.list_namespaced_pod(self.namespace, label_selector=selector).items]

    @_translate
    def events(self) -> list[dict]:
        return [self._plain(e) for e in self.core.list_namespaced_event(self.namespace).items]

    @_translate
    def read_log(self, pod: str, container: str | None = None, tail: int | None = None) -> str:
        resp = self.core.read_namespaced_pod_log(pod, self.namespace, container=container, tail_lines=tail,
                                                 _preload_content=False)
        return resp.data.decode("utf-8", errors="replace")

    @_translate
    def stream_log(self, pod: str, container: str | None = None, write: Callable[[str], None] = print,
                   tail: int | None = None) -> None:
        """Follow a pod's log (from its last `tail` lines) until the container ends (or Ctrl-C)."""
        resp = self.core.read_namespaced_pod_log(pod, self.namespace, container=container, follow=True,
                                                 tail_lines=tail, _preload_content=False)
        try:
            for chunk in resp.stream(decode_content=True):
                write(chunk.decode("utf-8", errors="replace"))
        finally:
            resp.release_conn()

    @_translate
    def delete_job(self, name: str, policy: str = "Foreground") -> None:
        """Delete a Job; the propagation policy makes the garbage collector remove its pods too."""
        self.batch.delete_namespaced_job(name, self.namespace, propagation_policy=policy)

    @_translate
    def delete_volcano_job(self, name: str, policy: str = "Foreground") -> None:
        from kubernetes import client

        self.custom.delete_namespaced_custom_object(*VOLCANO[:2], self.namespace, VOLCANO[2], name,
                                                    body=client.V1DeleteOptions(propagation_policy=policy))

    @_translate
    def delete_jobset(self, name: str, policy: str = "Foreground") -> None:
        """Delete a JobSet; its Jobs, their pods and its headless service go with it."""
        from kubernetes import client

        self.custom.delete_namespaced_custom_object(*JOBSET[:2], self.namespace, JOBSET[2], name,
                                                    body=client.V1DeleteOptions(propagation_policy=policy))

    @_translate
    def configmaps(self, selector: str) -> list[dict]:
        return [self._plain(c) for c in
                self.core.list_namespaced_config_map(self.namespace, label_selector=selector).items]

    @_translate
    def delete_configmap(self, name: str) -> None:
        self.core.delete_namespaced_config_map(name, self.namespace)


# -- creating what a stage rendered --------------------------------------------------------------
def _describe(obj: dict) -> tuple[str, str, str]:
    meta = obj["metadata"]
    kind = CUSTOM_KINDS.get((obj["apiVersion"], obj["kind"]), (None, obj["kind"], ""))[1]
    return kind, meta["name"], meta.get("namespace", "default")


def create(objects: list[dict], api_client=None, context: str | None = None) -> list[tuple[str, str, str]]:
    """Create rendered objects in order; (kind, name, outcome) each, the outcome one of "created",
    "same" (an object of that name already asks for exactly this: it stands, so asking twice is
    harmless) and "unchecked" (it exists, and this account may not read it to compare). An object
    of that name that asks for something else is refused: it would silently run the old request."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    api_client = api_client or connect(context)
    batch, custom = client.BatchV1Api(api_client), client.CustomObjectsApi(api_client)
    done = []
    for obj in objects:
        kind, name, ns = _describe(obj)
        crd = CUSTOM_KINDS.get((obj["apiVersion"], obj["kind"]))
        if crd is None and (obj["apiVersion"], obj["kind"]) != ("batch/v1", "Job"):
            raise UsageError(f"laclip does not create {obj['apiVersion']} {obj['kind']} objects")

        def call(fn, *args):
            try:
                return fn(*args)
            except HTTPError as exc:
                raise ClusterError(f"cannot reach the Kubernetes API server "
                                   f"({api_client.configuration.host}): {exc}") from None

        try:
            if crd is None:
                call(batch.create_namespaced_job, ns, obj)
            else:
                group, version, plural = crd[0]
                call(custom.create_namespaced_custom_object, group, version, ns, plural, obj)
            done.append((kind, name, "created"))
            continue
        except ApiException as exc:
            if exc.status == 404 and crd is not None:
                raise ClusterError(f"cannot create {kind} {ns}/{name}: the cluster does not serve "
                                   f"{crd[0][2]}.{crd[0][0]} (or namespace {ns!r} is missing): {crd[2]}, "
                                   "and apply manifests/") from None
            if exc.status == 403:
                raise ClusterError(f"creating {kind} {ns}/{name} is forbidden: apply manifests/ (Role laclip-user) "
                                   "or ask for the right to create it") from None
            if exc.status != 409:
                reason = " ".join((exc.body or exc.reason or "").split())[:300]
                raise ClusterError(f"the API server refused {kind} {ns}/{name}: {exc.status} {reason}") from None
        try:
            existing = (call(batch.read_namespaced_job, name, ns).metadata.annotations or {}) if crd is None else \
                (call(custom.get_namespaced_custom_object, *crd[0][:2], ns, crd[0][2], name)
                 .get("metadata", {}).get("annotations") or {})
        except ApiException as exc:
            if exc.status == 403:  # a training pod's Role may only create: the object stands, as asked before
                done.append((kind, name, "unchecked"))
                continue
            raise ClusterError(f"{kind} {ns}/{name} exists but cannot be read: {exc.status} {exc.reason}") from None
        want = obj["metadata"].get("annotations", {}).get(REQUEST_ANNOTATION)
        if want is None or existing.get(REQUEST_ANNOTATION) != want:
            what = "jobset" if crd and crd[0] == JOBSET else ("jobs.batch.volcano.sh" if crd else "job")
            raise ClusterError(f"{kind} {ns}/{name} already exists and asks for something else: delete it first "
                               f"(`kubectl delete {what} -n {ns} {name}`; its outputs in the store stay) "
                               "or pick another --run")
        done.append((kind, name, "same"))
    return done

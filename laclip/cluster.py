"""The one module that talks to a Kubernetes API server (the `kubernetes` client): the CLI's
submit, status, logs and cancel, and a training pod asking for its evaluations.

Credentials are resolved in one place, `connect`, like kubectl: $KUBECONFIG or ~/.kube/config
when there is one, else the pod's ServiceAccount (in-cluster). Objects go in and come back as
plain dicts (the API's JSON), so the pure logic of laclip_jobs reads them.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable

from laclip.errors import LaclipError, NotFound, UsageError
from laclip.kube import BATCH_JOB, REQUEST_ANNOTATION, Resource

log = logging.getLogger("laclip.cluster")


class ClusterError(LaclipError):
    """The API server cannot be reached, or refused the request."""


class Forbidden(ClusterError):
    """This account may not do what was asked (403)."""


def connect(context: str | None = None):
    """An ApiClient for the kubeconfig's current context (or `context`), else the pod's own
    ServiceAccount when running in a cluster."""
    import os

    import yaml
    from kubernetes import client, config

    env = os.environ.get("KUBECONFIG")
    paths = [p for p in env.split(os.pathsep) if p] if env else [os.path.expanduser("~/.kube/config")]
    files = [p for p in paths if os.path.lexists(p)]
    if not files:  # no kubeconfig at all: a pod's own ServiceAccount, else nothing configured
        try:
            config.load_incluster_config()
        except config.ConfigException:
            raise ClusterError(
                f"no Kubernetes cluster configured (no kubeconfig at {', '.join(paths)}, not in a pod); point kubectl "
                "at your cluster first, e.g. `gcloud container clusters get-credentials CLUSTER --region REGION`, "
                "or set $KUBECONFIG") from None
        return client.ApiClient()
    try:
        # The client reads $KUBECONFIG once at import; read it now so the current value counts.
        config.load_kube_config(config_file=env, context=context)
    except (yaml.YAMLError, UnicodeDecodeError, OSError, config.ConfigException, TypeError, AttributeError,
            KeyError, ValueError, IndexError) as exc:  # a file there, but not a kubeconfig laclip can use
        text = " ".join(str(exc).split())
        if isinstance(exc, (TypeError, AttributeError, KeyError, IndexError)):
            text = f"it is not a kubeconfig (a YAML mapping of clusters, contexts and users: {text})"
        elif isinstance(exc, UnicodeDecodeError):
            text = "it is not text (UTF-8 YAML)"
        elif isinstance(exc, OSError):
            text = exc.strerror or text
        if context and "Expected object with name" in text:
            text = f"it has no context {context!r} (`kubectl config get-contexts` lists them)"
        raise ClusterError(f"cannot read the kubeconfig {', '.join(files)}: {text[:300]}; fix it, or point $KUBECONFIG "
                           "at another") from None
    return client.ApiClient()


def _translate(what: str, namespace: str, host: str, fn: Callable, *args, **kwargs):
    """Call the API; its errors become messages that name the object and the fix."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return fn(*args, **kwargs)
    except ApiException as exc:
        if exc.status == 403:
            raise Forbidden(f"{what}: forbidden in namespace {namespace!r}; apply manifests/ (Role laclip-user) "
                            "or ask for rights to jobs, pods, pods/log and events") from None
        if exc.status == 404:
            raise NotFound(f"{what}: not found in namespace {namespace!r}") from None
        raise ClusterError(f"{what}: the API server answered {exc.status} {exc.reason}") from None
    except HTTPError as exc:
        raise ClusterError(f"cannot reach the Kubernetes API server at {host}: {exc}") from None


class Cluster:
    """Read, stream and delete the objects of laclip runs in one namespace, whatever their kind:
    every kind goes through the API's generic group/version/plural paths (batch/v1 Jobs too)."""

    def __init__(self, api_client, namespace: str):
        from kubernetes import client

        self.api = api_client
        self.namespace = namespace
        self.host = api_client.configuration.host
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.warned: set = set()
        self.absent: set = set()  # custom resources this cluster does not serve (404)

    def serves(self, res: Resource) -> bool:
        """False once a list of `res` answered 404: kubectl commands naming its kind would fail."""
        return res not in self.absent

    def _call(self, what: str, fn: Callable, *args, **kwargs):
        return _translate(what, self.namespace, self.host, fn, *args, **kwargs)

    def _plain(self, items) -> list[dict]:
        return [self.api.sanitize_for_serialization(i) for i in items]

    def objects(self, res: Resource, selector: str | None = None) -> list[dict]:
        """The objects of kind `res` (matching the label selector); [] when the cluster does not serve
        a custom kind (JobSet, Volcano, Trainer and Kueue are optional), or when an account may not
        list an optional one (status still works from the rest; a warning says what is missing)."""
        from kubernetes.client.exceptions import ApiException

        def fetch():
            try:
                return self.custom.list_namespaced_custom_object(res.group, res.version, self.namespace, res.plural,
                                                                 label_selector=selector or "")
            except ApiException as exc:
                if exc.status == 404 and res.install:
                    self.absent.add(res)
                    return {}
                if exc.status == 403 and res.optional:
                    if res not in self.warned:
                        self.warned.add(res)
                        log.warning("no right to list %s in %s; skipping them (apply manifests/ for the "
                                    "laclip-user Role)", res.kubectl, self.namespace)
                    return {}
                raise

        return self._call(f"list {res.kubectl}", fetch).get("items", [])

    def get(self, res: Resource, name: str) -> dict:
        return self._call(f"get {res.short} {name}", self.custom.get_namespaced_custom_object, res.group, res.version,
                          self.namespace, res.plural, name)

    def delete(self, res: Resource, name: str, policy: str = "Foreground") -> None:
        """Delete an object; the propagation policy makes the garbage collector remove what it owns
        (a Job's pods; a JobSet's Jobs and service; a TrainJob's JobSet) before the object goes."""
        from kubernetes import client

        self._call(f"delete {res.short} {name}", self.custom.delete_namespaced_custom_object, res.group, res.version,
                   self.namespace, res.plural, name, body=client.V1DeleteOptions(propagation_policy=policy))

    def pods(self, selector: str) -> list[dict]:
        return self._plain(self._call(f"pods {selector}", self.core.list_namespaced_pod, self.namespace,
                                      label_selector=selector).items)

    def events(self) -> list[dict]:
        return self._plain(self._call("events", self.core.list_namespaced_event, self.namespace).items)

    def configmaps(self, selector: str) -> list[dict]:
        return self._plain(self._call(f"configmaps {selector}", self.core.list_namespaced_config_map, self.namespace,
                                      label_selector=selector).items)

    def delete_configmap(self, name: str) -> None:
        self._call(f"delete configmap {name}", self.core.delete_namespaced_config_map, name, self.namespace)

    def read_log(self, pod: str, container: str | None = None, tail: int | None = None) -> str:
        resp = self._call(f"read log {pod}", self.core.read_namespaced_pod_log, pod, self.namespace,
                          container=container, tail_lines=tail, _preload_content=False)
        return resp.data.decode("utf-8", errors="replace")

    def stream_log(self, pod: str, container: str | None = None, write: Callable[[str], None] = print,
                   tail: int | None = None) -> None:
        """Follow a pod's log (from its last `tail` lines) until the container ends (or Ctrl-C)."""
        def follow():
            resp = self.core.read_namespaced_pod_log(pod, self.namespace, container=container, follow=True,
                                                     tail_lines=tail, _preload_content=False)
            try:
                for chunk in resp.stream(decode_content=True):
                    write(chunk.decode("utf-8", errors="replace"))
            finally:
                resp.release_conn()

        self._call(f"stream log {pod}", follow)


# -- creating what a stage rendered --------------------------------------------------------------
def create(objects: list[dict], resources: Iterable[Resource] = (BATCH_JOB,), api_client=None,
           context: str | None = None) -> list[tuple[str, str, str]]:
    """Create rendered objects in order; (kind, name, outcome) each, the outcome one of "created",
    "same" (an object of that name already asks for exactly this: it stands, so asking twice is
    harmless) and "unchecked" (it exists, and this account may not read it to compare). An object
    of that name that asks for something else is refused: it would silently run the old request.
    `resources`: the kinds the caller renders (laclip_jobs.backends.RESOURCES); any other is refused."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    known = {(r.api_version, r.kind): r for r in resources}
    api_client = api_client or connect(context)
    custom = client.CustomObjectsApi(api_client)

    def call(fn, *args):
        try:
            return fn(*args)
        except HTTPError as exc:
            raise ClusterError(f"cannot reach the Kubernetes API server ({api_client.configuration.host}): "
                               f"{exc}") from None

    done = []
    for obj in objects:
        res = known.get((obj["apiVersion"], obj["kind"]))
        if res is None:
            raise UsageError(f"laclip does not create {obj['apiVersion']} {obj['kind']} objects")
        kind, name, ns = res.name, obj["metadata"]["name"], obj["metadata"].get("namespace", "default")
        path = (res.group, res.version, ns, res.plural)
        try:
            call(custom.create_namespaced_custom_object, *path, obj)
            done.append((kind, name, "created"))
            continue
        except ApiException as exc:
            if exc.status == 404 and res.install:
                raise ClusterError(f"cannot create {kind} {ns}/{name}: the cluster does not serve {res.kubectl} (or "
                                   f"namespace {ns!r} is missing): {res.install}, and apply manifests/") from None
            if exc.status == 403:
                raise ClusterError(f"creating {kind} {ns}/{name} is forbidden: apply manifests/ (Role laclip-user) "
                                   "or ask for the right to create it") from None
            if exc.status != 409:
                reason = " ".join((exc.body or exc.reason or "").split())[:300]
                raise ClusterError(f"the API server refused {kind} {ns}/{name}: {exc.status} {reason}") from None
        try:
            existing = (call(custom.get_namespaced_custom_object, *path, name).get("metadata") or {}) \
                .get("annotations") or {}
        except ApiException as exc:
            if exc.status == 403:  # a training pod's Role may only create: the object stands, as asked before
                done.append((kind, name, "unchecked"))
                continue
            raise ClusterError(f"{kind} {ns}/{name} exists but cannot be read: {exc.status} {exc.reason}") from None
        want = obj["metadata"].get("annotations", {}).get(REQUEST_ANNOTATION)
        if want is None or existing.get(REQUEST_ANNOTATION) != want:
            raise ClusterError(f"{kind} {ns}/{name} already exists and asks for something else: delete it first "
                               f"(`kubectl delete {res.short} -n {ns} {name}`; its outputs in the store stay) "
                               "or pick another --run")
        done.append((kind, name, "same"))
    return done

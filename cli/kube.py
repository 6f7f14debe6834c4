"""The one place the CLI talks to a Kubernetes API server (the `kubernetes` client).

Credentials come from the user's kubeconfig ($KUBECONFIG or ~/.kube/config, like kubectl),
or from the pod's service account when laclip itself runs in the cluster. Objects are
returned as plain dicts (the API's JSON) so the pure logic in laclip_jobs.status reads them.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from laclip.errors import LaclipError, NotFound

VOLCANO = ("batch.volcano.sh", "v1alpha1", "jobs")
KUEUE_WORKLOADS = ("kueue.x-k8s.io", "v1beta1", "workloads")


class ClusterError(LaclipError):
    """The API server cannot be reached, or refused the request."""


def connect(context: str | None = None):
    """An ApiClient for the current kubeconfig context (or `context`), else in-cluster."""
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
        self.optional = {KUEUE_WORKLOADS}  # nice to have: a 403 on these skips them
        self.warned: set = set()
        self.absent: set = set()  # CRDs this cluster does not serve (404)

    @property
    def has_volcano(self) -> bool:
        """False once a Volcano list answered 404: kubectl commands naming its kind would fail."""
        return VOLCANO not in self.absent

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
                    from laclip_cli.console import err

                    err.print(f"[yellow]note:[/] no right to list {crd[2]}.{crd[0]} in {self.namespace}; "
                              "skipping them (apply manifests/ for the laclip-user Role)")
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
    def workloads(self) -> list[dict]:
        return self._custom_list(KUEUE_WORKLOADS, None)

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
    def configmaps(self, selector: str) -> list[dict]:
        return [self._plain(c) for c in
                self.core.list_namespaced_config_map(self.namespace, label_selector=selector).items]

    @_translate
    def delete_configmap(self, name: str) -> None:
        self.core.delete_namespaced_config_map(name, self.namespace)

"""Pure helpers for Kubernetes objects, shared by the renderers (laclip_jobs), the cluster client
(laclip.cluster) and a training pod that copies its eval Job: no API client imported here.

A `Resource` names a kind the way the API serves it (group, version, plural) and the way a person
types it (kubectl's names); each scheduler backend declares the one it creates (laclip_jobs.backends).
"""

from __future__ import annotations

from dataclasses import dataclass

# What a rendered object asks for (stamp): a second create of the same name is harmless when this
# matches, and refused when it does not.
REQUEST_ANNOTATION = "laclip.dev/request"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"  # Kueue: a LocalQueue admits the object that names it


@dataclass(frozen=True)
class Resource:
    """A kind of object laclip creates or reads, as the API serves it."""

    api_version: str  # batch/v1, jobset.x-k8s.io/v1alpha2
    kind: str  # Job, JobSet
    plural: str  # jobs, jobsets: the path segment of the API
    title: str = ""  # how messages name it [default: the kind]
    singular: str = ""  # what `kubectl delete <singular> NAME` takes [default: the full plural name]
    install: str = ""  # what to install when the cluster does not serve it (a CRD)
    # nice to have: an account without the right to list it skips it, with a warning (the custom kinds: a
    # Role applied before laclip created a kind must not break `laclip status` for the rest)
    optional: bool = False

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def name(self) -> str:
        return self.title or self.kind

    @property
    def kubectl(self) -> str:
        """The name kubectl takes without ambiguity: `jobs` for batch/v1, else `<plural>.<group>`."""
        return self.plural if self.group in ("", "batch") else f"{self.plural}.{self.group}"

    @property
    def short(self) -> str:
        return self.singular or self.kubectl

    def makes(self, obj: dict) -> bool:
        return (obj.get("apiVersion"), obj.get("kind")) == (self.api_version, self.kind)


BATCH_JOB = Resource("batch/v1", "Job", "jobs", singular="job")


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

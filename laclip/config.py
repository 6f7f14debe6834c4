"""Typed options shared by every job: where it runs on the cluster.

Stage configs (laclip.rewrite.config, laclip.train.config, laclip.eval.config) embed
ClusterOptions; the CLI fills them from flags, jobs/ renders them, the entrypoints
read them back. This module must stay importable without torch.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

Accelerator = Literal["nvidia-tesla-a100", "nvidia-a100-80gb"]


def explain(exc) -> str:
    """A pydantic ValidationError as one line: `field: what is wrong; ...`."""
    return "; ".join(
        (f"{'.'.join(str(p) for p in e['loc'])}: " if e["loc"] else "") + e["msg"].removeprefix("Value error, ")
        for e in exc.errors()
    )


def flag_error(exc) -> str:
    """The first error of a pydantic ValidationError as a CLI message, `invalid --flag 'given': why`
    (the value is shown when the reason does not already quote it)."""
    first = exc.errors()[0]
    flag = "--" + ".".join(str(p) for p in first["loc"] if not isinstance(p, int)).replace("_", "-")
    msg = first["msg"].removeprefix("Value error, ")
    given = first.get("input")
    shown = f" {given!r}" if isinstance(given, str) and repr(given) not in msg else ""
    return f"invalid {flag}{shown}: {msg}"


def _quantity(pattern: str, example: str):
    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise ValueError(f"{value!r} is not a Kubernetes quantity such as {example}")
        return value
    return AfterValidator(check)


# Kubernetes quantities, in the forms the renderers understand: "8" or "500m" CPUs, "64Gi" memory.
CpuQuantity = Annotated[str, _quantity(r"[0-9]+(\.[0-9]+)?|[0-9]+m", "8 or 500m")]
MemoryQuantity = Annotated[str, _quantity(r"[0-9]+(\.[0-9]+)?([KMGT]i?)?", "64Gi or 512Mi")]

DEFAULT_NAMESPACE = "laclip"
DEFAULT_SERVICE_ACCOUNT = "laclip-runner"
DEFAULT_REGISTRY = "us-docker.pkg.dev/YOUR_PROJECT/laclip"
IMAGE_TAG = "0.1.0"  # images/build.sh pushes every image with this tag


def default_image(component: str) -> str:
    """The image a stage runs in, as pushed by images/build.sh (override with --image)."""
    import os

    registry = os.environ.get("LACLIP_REGISTRY", DEFAULT_REGISTRY)
    return f"{registry}/{component}:{os.environ.get('LACLIP_IMAGE_TAG', IMAGE_TAG)}"


class ClusterOptions(BaseModel):
    """Where and how pods run on GKE."""

    model_config = ConfigDict(extra="forbid")

    namespace: str = DEFAULT_NAMESPACE
    service_account: str = DEFAULT_SERVICE_ACCOUNT
    image: str | None = None  # None: default_image(component)
    accelerator: Accelerator = "nvidia-tesla-a100"
    gpus: int = Field(1, ge=0, le=16)
    cpu: CpuQuantity = "8"
    memory: MemoryQuantity = "64Gi"
    shm: MemoryQuantity = "16Gi"
    spot: bool = False
    queue: str | None = None  # Kueue LocalQueue name
    priority_class: str | None = None
    ttl_seconds_after_finished: int = 7 * 24 * 3600

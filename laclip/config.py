"""Typed options shared by every job: where it runs on the cluster.

Stage configs (laclip.rewrite.config, laclip.train.config, laclip.eval.config) embed
ClusterOptions; the CLI fills them from flags, jobs/ renders them, the entrypoints
read them back. This module must stay importable without torch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Accelerator = Literal["nvidia-tesla-a100", "nvidia-a100-80gb"]

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
    cpu: str = "8"
    memory: str = "64Gi"
    shm: str = "16Gi"
    spot: bool = False
    queue: str | None = None  # Kueue LocalQueue name
    priority_class: str | None = None
    ttl_seconds_after_finished: int = 7 * 24 * 3600

"""open_clip models by name, including laclip's own configs (laclip.models, registered on import)."""

from __future__ import annotations

import open_clip
import torch

from laclip.errors import UsageError
from laclip.models import register
from laclip.train.model_names import check_model_name

register()


def check_model(name: str) -> str:
    if open_clip.get_model_config(name) is None:
        check_model_name(name)  # raises with suggestions
        raise UsageError(f"unknown model {name!r}: not an open_clip model config")
    return name


def create(name: str, device: torch.device, grad_checkpointing: bool = False):
    """A freshly initialised model (fp32 weights; autocast handles bf16)."""
    check_model(name)
    model = open_clip.create_model(name, device=device)
    if grad_checkpointing:
        model.set_grad_checkpointing(True)
    return model


def image_geometry(name: str) -> tuple[int, tuple, tuple]:
    """(image size, mean, std) the model expects."""
    cfg = open_clip.get_model_config(check_model(name))
    size = cfg["vision_cfg"].get("image_size", 224)
    size = size[0] if isinstance(size, (list, tuple)) else size
    pp = cfg.get("preprocess_cfg", {})
    mean = tuple(pp.get("mean", open_clip.OPENAI_DATASET_MEAN))
    return int(size), mean, tuple(pp.get("std", open_clip.OPENAI_DATASET_STD))


def weight_decay_groups(model: torch.nn.Module, wd: float) -> list[dict]:
    """AdamW groups as in the paper: no weight decay on biases, norms, scalars and embeddings' gains."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exclude = p.ndim < 2 or any(k in name for k in ("bn", "ln", "norm", "bias", "logit_scale"))
        (no_decay if exclude else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": wd}]

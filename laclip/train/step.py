"""One optimizer step's forward and backward, with contrastive gradient accumulation; the
optimizer; the images' conversion on the device.

Contrastive gradient accumulation (`accum_freq` K > 1). A contrastive loss is not a sum over
sub-batches: every sample's term depends on every other sample of the batch, so summing the
gradients of K small steps is the gradient of a K-times smaller batch, not of the large one.
As open_clip's `--accum-freq` does, the model first runs on each of the K sub-batches without
autograd and the features are kept; then each sub-batch runs again with autograd, its fresh
features standing in for its cached ones among the cached features of the whole batch. Here the
loss itself is computed once, on the whole batch's cached features (so with any loss that is a
function of the batch's features, whatever it computes); its gradient with respect to each
sub-batch's features is then pushed back through that sub-batch's second forward. The parameter
gradients are those of one step on the whole batch (to float tolerance; tests/train/test_accum.py
checks it on 1 and 2 processes), and so is the logit scale's: it is counted once, where summing
K losses would count it K times. The cost is one extra forward per sub-batch (about a third more
compute) and the features of the whole batch in memory, never its activations.

What a model must do for this to be exact: the second forward of a sub-batch must give the features
of the first. The random state is restored before each second forward (dropout draws the same
masks), and BatchNorm's running statistics are put back after the first (they move once per
sub-batch, not twice). BatchNorm layers still normalise each sub-batch by its own statistics, as
they normalise each process's batch under DDP: for the ResNet towers (laclip-tiny, RN50) a step
with K sub-batches is a step with sub-batch BatchNorm, not exactly the whole batch's. ViTs have none.

Under DDP the first K-1 backward passes run in `no_sync()`; the last one all-reduces the summed
gradients, once per step. A checkpoint is only ever written between optimizer steps, so a run
stopped mid-accumulation resumes at the start of that step and computes all K sub-batches again,
from the same loader positions (tests/train/test_train.py checks the resumed weights).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Sequence

import torch

LossFn = Callable[..., torch.Tensor]


def make_optimizer(params: list[dict], device: torch.device, lr: float, betas, eps: float) -> torch.optim.AdamW:
    """AdamW with the fused kernel where the device has one (CUDA, CPU...), else the foreach one:
    one or a few kernels for all parameters instead of a loop over them."""
    return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, **optimizer_impl(device))


def optimizer_impl(device: torch.device) -> dict:
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    return {"fused": True} if device.type in _get_fused_kernels_supported_devices() else {"foreach": True}


def set_optimizer_impl(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """load_state_dict brings back the saving run's implementation flags (a checkpoint written on a
    GPU asks for the fused CUDA kernel): this run's device decides them."""
    impl = optimizer_impl(device)
    for group in optimizer.param_groups:
        group["fused"], group["foreach"] = impl.get("fused", False), impl.get("foreach", None)


class ImageNormalizer:
    """uint8 crops [B, H, W, 3] from the loader -> float [B, 3, H, W], normalised, on the device.
    The loader ships bytes (a quarter of float32's copy through shared memory and over PCIe), and
    the conversion is one fused pass on the GPU instead of a per-sample one in a loader worker."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device):
        self.scale = (1.0 / (255.0 * torch.tensor(std, dtype=torch.float32))).view(1, 3, 1, 1).to(device)
        self.shift = (-torch.tensor(mean, dtype=torch.float32) / torch.tensor(std)).view(1, 3, 1, 1).to(device)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:  # already a float batch
            return images
        out = torch.empty(images.shape[0], 3, images.shape[1], images.shape[2], device=images.device)
        out.copy_(images.permute(0, 3, 1, 2))
        return out.mul_(self.scale).add_(self.shift)


def compile_model(net: torch.nn.Module, grad_checkpointing: bool = False, distributed: bool = False) -> None:
    """torch.compile `net` (the DDP wrapper when there is one, so dynamo splits the graph at DDP's
    gradient buckets and the all-reduce still overlaps the backward) in place: the module and its
    state_dict keys stay what open_clip loads. The first steps, and the first step that accumulates
    (a graph without autograd), pay for the compilation."""
    if grad_checkpointing and distributed:  # dynamo's DDP graph splitting does not support it
        torch._dynamo.config.optimize_ddp = False
    net.compile()


def _rng_state(device: torch.device):
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


@contextlib.contextmanager
def _running_stats_kept(model: torch.nn.Module):
    """BatchNorm running statistics as they were before the block (the first, feature-caching
    forward must not move them: the second forward of the same sub-batch does)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
             and m.track_running_stats and m.running_mean is not None]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, (mean, var, count) in zip(norms, saved):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)


class StepRunner:
    """forward + backward of one optimizer step over K sub-batches; returns the step's loss as a
    device tensor (no host sync). The model's forward returns (image features, text features,
    *per-step outputs such as the logit scale); the loss is loss_fn(*outputs)."""

    def __init__(self, net: torch.nn.Module, model: torch.nn.Module, loss_fn: LossFn, *,
                 autocast=None, scaler=None, distributed: bool = False):
        self.net, self.model, self.loss_fn = net, model, loss_fn
        self.autocast = autocast if autocast is not None else contextlib.nullcontext()
        self.scaler, self.distributed = scaler, distributed

    def _scaled(self, loss: torch.Tensor) -> torch.Tensor:
        return self.scaler.scale(loss) if self.scaler is not None else loss

    def __call__(self, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        if len(batches) == 1:
            images, texts = batches[0]
            with self.autocast:
                loss = self.loss_fn(*self.net(images, texts))
            self._scaled(loss).backward()
            return loss.detach()
        return self._accumulated(batches)

    def _accumulated(self, batches) -> torch.Tensor:
        device = batches[0][0].device
        states, image_parts, text_parts = [], [], []
        with torch.no_grad(), _running_stats_kept(self.model):
            for images, texts in batches:
                states.append(_rng_state(device))
                with self.autocast:
                    out = self.net(images, texts)
                image_parts.append(out[0])
                text_parts.append(out[1])
        # the loss once, on the whole batch's features; its gradient with respect to each of them
        leaves = [torch.cat(image_parts).requires_grad_(), torch.cat(text_parts).requires_grad_(),
                  *(o.detach().requires_grad_(o.is_floating_point()) for o in out[2:])]
        del image_parts, text_parts
        with self.autocast:
            loss = self.loss_fn(*leaves)
        self._scaled(loss).backward()
        grads = [leaf.grad if leaf.grad is not None else torch.zeros_like(leaf) for leaf in leaves]
        rest = [(i, g) for i, g in enumerate(grads[2:], 2) if leaves[i].requires_grad]
        img_at = txt_at = 0
        after = _rng_state(device)
        for j, (images, texts) in enumerate(batches):
            last = j == len(batches) - 1
            sync = contextlib.nullcontext() if last or not self.distributed else self.net.no_sync()
            _set_rng_state(states[j], device)
            with sync:
                with self.autocast:
                    out = self.net(images, texts)
                n_img, n_txt = out[0].shape[0], out[1].shape[0]
                tensors = [out[0], out[1]]
                tensor_grads = [grads[0][img_at:img_at + n_img], grads[1][txt_at:txt_at + n_txt]]
                if last:  # the per-step outputs' gradient once, and in the pass that all-reduces
                    tensors += [out[i] for i, _ in rest]
                    tensor_grads += [g for _, g in rest]
                torch.autograd.backward(tensors, tensor_grads)
            img_at, txt_at = img_at + n_img, txt_at + n_txt
        _set_rng_state(after, device)
        return loss.detach()

"""Contrastive gradient accumulation against one step on the whole batch: the helpers the tests use
in-process, and (run under torchrun) the same comparison on several gloo processes under DDP.

    torchrun --standalone --nproc_per_node 2 tests/train/accum_worker.py OUT_DIR

Each rank writes OUT_DIR/rank<R>.json: for every case, the largest difference between the
accumulated gradients and the whole batch's, relative to the largest gradient of the tensor."""

from __future__ import annotations

import json
import os
import sys

import open_clip
import torch

from laclip.train.loss import ClipLoss, MultiTextLoss
from laclip.train.step import StepRunner

CTX, VOCAB = 12, 200


def tiny_vit(seed: int = 0, patch_dropout: float = 0.0) -> torch.nn.Module:
    """A small open_clip CLIP with a ViT image tower (no BatchNorm: accumulation is exact)."""
    torch.manual_seed(seed)
    return open_clip.CLIP(embed_dim=32, vision_cfg={"image_size": 32, "patch_size": 8, "width": 32, "layers": 2,
                                                    "head_width": 16, "mlp_ratio": 2, "patch_dropout": patch_dropout},
                          text_cfg={"context_length": CTX, "vocab_size": VOCAB, "width": 32, "heads": 2, "layers": 2})


def data(n: int, texts_per_image: int = 1, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, 32, 32, generator=g)
    texts = torch.randint(1, VOCAB - 1, (n * texts_per_image, CTX), generator=g)
    texts[:, -1] = VOCAB - 1  # an end-of-text token to pool at (open_clip pools at the argmax id)
    return images, texts


def split(images, texts, k: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    m = texts.shape[0] // images.shape[0]
    n = images.shape[0] // k
    return [(images[i * n:(i + 1) * n], texts[i * n * m:(i + 1) * n * m]) for i in range(k)]


def gradients(net, model, loss_fn, batches, distributed: bool = False) -> tuple[float, dict[str, torch.Tensor]]:
    """(loss, every parameter's gradient) of one step over `batches` as the trainer takes it."""
    model.zero_grad(set_to_none=True)
    loss = StepRunner(net, model, loss_fn, distributed=distributed)(batches)
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def worst(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The largest |a - b| of any tensor, relative to that tensor's largest |b|."""
    assert a.keys() == b.keys(), set(a) ^ set(b)
    return max(((a[k] - b[k]).abs().max() / b[k].abs().max().clamp_min(1e-12)).item() for k in b)


def _ddp_cases(rank: int, world: int) -> dict:
    import torch.distributed as dist

    dist.init_process_group("gloo")
    out = {}
    for name, m, kw in (("clip", 1, {}), ("clip-gather-with-grad", 1, {"gather_with_grad": True}),
                        ("clip-local-loss", 1, {"gather_with_grad": True, "local_loss": True}),
                        ("multitext", 3, {"gather_with_grad": True})):
        model = tiny_vit()
        net = torch.nn.parallel.DistributedDataParallel(model)
        loss_fn = (MultiTextLoss(m, rank=rank, world_size=world, **kw) if m > 1 else
                   ClipLoss(rank=rank, world_size=world, cache_labels=True, **kw))
        images, texts = data(8 * world, m)  # the global batch; this rank trains on its part
        mine = split(images, texts, world)[rank]
        loss1, whole = gradients(net, model, loss_fn, [mine], distributed=True)
        loss4, accum = gradients(net, model, loss_fn, split(*mine, 4), distributed=True)
        case = {"loss_whole": loss1, "loss_accum": loss4, "accum_vs_whole": worst(accum, whole)}
        if kw.get("gather_with_grad"):  # then DDP's step is the one-process step on the global batch
            alone = tiny_vit()
            single = MultiTextLoss(m) if m > 1 else ClipLoss()
            _, reference = gradients(alone, alone, single, [(images, texts)])
            case["accum_vs_one_process"] = worst(accum, reference)
        out[name] = case
    dist.destroy_process_group()
    return out


if __name__ == "__main__":
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    torch.set_num_threads(1)
    result = _ddp_cases(rank, world)
    with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as f:
        json.dump(result, f)

"""Run under torchrun by tests/train/test_loss.py: each rank holds image RANK of the hand-worked batch
(and its 2 texts) and writes the loss of every form and mode to OUT/<rank>.json."""

import json
import os
import sys

import torch
import torch.distributed as dist

from laclip.train.loss import MultiTextLoss

IMAGES = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
# image-major: image 0's texts, then image 1's; slot 0 matches perfectly, slot 1 is e0 for both
TEXTS = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])


def main(out: str) -> None:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        dist.init_process_group("gloo")
    per = IMAGES.shape[0] // world
    img, txt = IMAGES[rank * per:(rank + 1) * per], TEXTS[rank * per * 2:(rank + 1) * per * 2]
    found = {}
    for form in ("paper", "pooled"):
        for local in (False, True):
            loss = MultiTextLoss(2, local_loss=local, gather_with_grad=local, rank=rank, world_size=world, form=form)
            found[f"{form}-{'local' if local else 'global'}"] = loss(img, txt, torch.tensor(1.0)).item()
    with open(os.path.join(out, f"{rank}.json"), "w") as f:
        json.dump(found, f)
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])

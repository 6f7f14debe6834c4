"""The training entrypoint, run by torchrun (under laclip.train.launch) on every process:

    torchrun --nproc_per_node N -m laclip.train.main --config '<TrainConfig JSON>'

env:// rendezvous (torchrun sets RANK/WORLD_SIZE/...), nccl on GPU and gloo on CPU. Resumes
from the newest complete checkpoint of the run, so an elastic restart continues where the
last checkpoint left off, with the same loader position when the number of workers, the seed
and the shuffle buffer are unchanged.
`--resume none` or a checkpoint path applies only while the run has no checkpoint of its own:
every restart passes the same config, and must not go back to where the run began.
"""

from __future__ import annotations

import datetime
import logging
import os
import sys

import torch
import torch.distributed as dist

from laclip.errors import LaclipError
from laclip.lease import Lease, owner_token
from laclip.logs import setup
from laclip.storage import open_store
from laclip.train import model as models
from laclip.train.config import TrainConfig
from laclip.train.inputs import check_inputs
from laclip.train.loop import train_loop, worker_error

log = logging.getLogger("laclip.train")


def init_distributed() -> tuple[int, int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
        # as open_clip_train: TF32 for what runs in fp32 (autocast leaves some ops there), and cuDNN
        # picks its fastest convolution for the patch embedding's fixed shapes
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    if world > 1:
        # Collectives (and gloo's connect after an elastic restart) give up after this long, so a
        # peer that died mid-collective turns into a restart instead of a hang.
        timeout = datetime.timedelta(seconds=float(os.environ.get("LACLIP_DIST_TIMEOUT_S", "1800")))
        dist.init_process_group("nccl" if cuda else "gloo", init_method="env://", timeout=timeout)
    return rank, world, local_rank, device


def train(cfg: TrainConfig) -> int:
    """Run (or continue) the training run; returns the final step."""
    rank, world, _, device = init_distributed()
    setup("train", rank)
    models.check_model(cfg.model)
    store = open_store(cfg.root)
    shards = check_inputs(cfg, store, holding=rank > 0)  # rank 0 names a live holder before taking the lease
    config = cfg.model_dump(mode="json", exclude={"eval_job"})
    # One owner per run: rank 0 holds the run's lease while it trains; a second trainer of the
    # same run (another `laclip submit`, a leftover process) refuses to start, naming the holder.
    lease = Lease(store, cfg.run, cfg.owner or owner_token(), cfg.lease_timeout_s) if rank == 0 else None
    if lease is not None:
        lease.acquire().keep_alive()
    try:
        step = train_loop(cfg, rank, world, device, store, shards, config, lease)
    finally:
        if lease is not None:
            lease.release()
    if world > 1:
        dist.destroy_process_group()
    return step


def run(cfg: TrainConfig) -> None:
    from laclip.procs import die_with_parent

    die_with_parent()  # torchrun (or the local CLI) gone: so is this worker, not left training alone
    try:
        train(cfg)
    except LaclipError as exc:
        raise worker_error(exc) from None


def main(argv: list[str] | None = None) -> int:
    from laclip.entrypoint import main as entry

    return entry("train", TrainConfig, run, argv, log_setup=lambda: setup("train", int(os.environ.get("RANK", "0"))))


if __name__ == "__main__":
    sys.exit(main())

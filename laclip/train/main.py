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

import contextlib
import datetime
import logging
import math
import os
import random
import sys
import time
from collections import Counter

import torch
import torch.distributed as dist

from laclip.errors import DataError, LaclipError, UsageError
from laclip.lease import Lease, owner_token
from laclip.logs import setup
from laclip.storage import open_store
from laclip.train import checkpoint as ckpt
from laclip.train import model as models
from laclip.train.config import RESUME_KEYS, TrainConfig
from laclip.train.data import TrainStream
from laclip.train.eval_hook import request_eval
from laclip.train.inputs import check_inputs, scan
from laclip.train.metrics import MetricsLog
from laclip.train.loss import build_loss
from laclip.train.step import ImageNormalizer, StepRunner, compile_model, make_optimizer, set_optimizer_impl

log = logging.getLogger("laclip.train")


def lr_at(step: int, base: float, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * base * (1 + math.cos(math.pi * min(1.0, progress)))


LENGTH_KEYS, WARMUP_KEYS = ("steps", "epochs"), ("warmup_steps", "warmup_epochs")
# What the end of a run reports as bad input seen and skipped (or trained on originals).
BAD_INPUT = ("broken_images", "oversized_images", "unreadable_shards", "unreadable_parquets", "skipped_rows",
             "duplicate_keys", "missing_captions", "shards_without_rewrites", "keys_without_rewrites",
             "rewrite_caption_mismatches")


def plan_schedule(cfg: TrainConfig, state: dict | None, samples: int, world: int) -> tuple[int, int]:
    """(total steps, warm-up steps), warm-up capped at the total. A resumed run keeps the ones it
    was planned with, so an elastic resize does not re-plan them from the new world size; a start
    that asks for another length (--steps/--epochs) or warm-up gets it, with a warning."""
    total, warmup = cfg.total_steps(samples, world), cfg.warmup(samples, world)
    if state is not None:
        before, now = state["config"], cfg.model_dump(mode="json")
        if all(before.get(k) == now[k] for k in LENGTH_KEYS):
            total = state["total_steps"]
        elif total < state["step"]:
            raise UsageError(f"run {cfg.run!r} is at step {state['step']}, past the {total} steps asked for: "
                             "ask for more steps or start a new run id")
        else:
            log.warning("run length changed (%s) from %d to %d steps: the learning-rate schedule is "
                        "re-planned from step %d", ", ".join(f"{k}: {before.get(k)} -> {now[k]}" for k in LENGTH_KEYS),
                        state["total_steps"], total, state["step"])
        # checkpoints older than this field: re-planned from this world size
        if "warmup_steps" in state and all(before.get(k) == now[k] for k in WARMUP_KEYS):
            warmup = state["warmup_steps"]
    if warmup >= total:
        log.warning("warm-up of %d steps is not shorter than the run's %d steps: the learning rate rises "
                    "until the end and never decays (set --warmup-steps)", warmup, total)
    return total, min(warmup, total)


class LossHealth:
    """The window's summed loss and the first step whose loss was not finite, kept on the device."""

    NONE = 2**62

    def __init__(self, device):
        self.sum = torch.zeros((), device=device)
        self.bad_step = torch.full((), self.NONE, dtype=torch.long, device=device)
        self.bad_loss = torch.zeros((), device=device)

    def add(self, loss: torch.Tensor, step: int) -> None:
        loss = loss.float()
        self.sum += loss
        first = torch.isfinite(loss).logical_not() & (self.bad_step == self.NONE)
        self.bad_step = torch.where(first, step, self.bad_step)
        self.bad_loss = torch.where(first, loss, self.bad_loss)

    def check(self, world: int) -> None:
        """Raise on every rank alike when any rank saw a loss that was not finite."""
        first = self.bad_step.clone()
        if world > 1:
            dist.all_reduce(first, op=dist.ReduceOp.MIN)
        at = int(first.item())
        if at != self.NONE:
            value = self.bad_loss.item() if int(self.bad_step.item()) == at else "not finite (on another process)"
            raise LaclipError(f"loss is {value} at step {at}: lower --lr or check the data")

    def take(self) -> torch.Tensor:
        out, self.sum = self.sum.reshape(1), torch.zeros((), device=self.sum.device)
        return out


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


def gather(obj, world: int) -> list:
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def worker_error(exc: LaclipError) -> LaclipError:
    """DataLoader re-raises a loader worker's error with the worker's whole traceback as its
    message ("Caught DataError in DataLoader worker process 0. Original Traceback..."): the
    same error with just the original message."""
    head = f"{type(exc).__module__}.{type(exc).__qualname__}: "
    text = str(exc)
    if not text.startswith("Caught ") or head not in text:
        return exc
    return type(exc)(text.rsplit(head, 1)[1].strip())


def train(cfg: TrainConfig) -> int:
    """Run (or continue) the training run; returns the final step."""
    rank, world, _, device = init_distributed()
    setup("train", rank)
    models.check_model(cfg.model)
    store = open_store(cfg.root)
    shards = check_inputs(cfg, store)
    config = cfg.model_dump(mode="json", exclude={"eval_job"})
    # One owner per run: rank 0 holds the run's lease while it trains; a second trainer of the
    # same run (another `laclip submit`, a leftover process) refuses to start, naming the holder.
    lease = Lease(store, cfg.run, cfg.owner or owner_token(), cfg.lease_timeout_s) if rank == 0 else None
    if lease is not None:
        lease.acquire().keep_alive()
    try:
        step = _loop(cfg, rank, world, device, store, shards, config, lease)
    finally:
        if lease is not None:
            lease.release()
    if world > 1:
        dist.destroy_process_group()
    return step


def _loop(cfg: TrainConfig, rank: int, world: int, device, store, shards, config: dict, lease) -> int:
    from torch.utils.data import DataLoader

    state, where = None, None
    broken: list[str] = []  # skipped at resume as unreadable: the run may write those steps again
    found = ckpt.load_latest(store, cfg.run, broken)
    if found:
        where, state = found
        if cfg.resume != "latest":
            log.warning("run %r has checkpoints of its own: continuing from the newest, not --resume %s",
                        cfg.run, cfg.resume)
    elif cfg.resume != "none" and cfg.resume != "latest":
        from laclip.train.inputs import resume_path

        where = resume_path(cfg.resume, store)
        try:
            state = ckpt.load(store, where)
        except ckpt.LOAD_ERRORS as exc:
            raise DataError(f"--resume {store.url_of(where)} does not load as a checkpoint ({type(exc).__name__}: "
                            f"{' '.join(str(exc).split())[:200]})") from None
    if state is not None:
        ckpt.check_compatible(state["config"], config, RESUME_KEYS, store.url_of(where))
        # checkpoints from before the field trained the pooled form
        before = state["config"].get("multitext_form", "pooled")
        if cfg.loss == "multitext" and before != cfg.multitext_form:
            raise UsageError(f"cannot resume from {store.url_of(where)}: it trained the {before!r} multi-text loss, "
                             f"this run asks for {cfg.multitext_form!r} (--set multitext_form={before} to continue it)")
    if rank == 0:
        ckpt.write_run_config(store, cfg.run, config, RESUME_KEYS)

    found = scan(store, shards, cfg.scan_shards)
    samples = found.samples
    if rank == 0:
        for sid, why in sorted(found.unreadable.items()):
            log.warning("parquet of shard %s left out of the sample count (its tar is still trained on): %s", sid, why)
        repeats = sum(len(v) for v in found.repeated.values())
        if repeats or found.skipped_rows:
            log.warning("dataset %r: %d keys also in an earlier shard (skipped there), bad parquet rows %s",
                        cfg.dataset, repeats, dict(found.skipped_rows) or "none")
    if not samples and cfg.steps is None and state is None:
        why = "; ".join(found.unreadable.values()) or "the parquets list no successful sample"
        raise DataError(f"dataset {cfg.dataset!r}: no sample could be counted to plan {cfg.epochs:g} epochs "
                        f"({why[:300]}): pass --steps N, or fix the parquets")
    total, warmup = plan_schedule(cfg, state, samples, world)
    accum, global_batch = cfg.accum_freq, cfg.step_samples(world)
    torch.manual_seed(cfg.seed)
    model = models.create(cfg.model, device, cfg.grad_checkpointing)
    optimizer = make_optimizer(models.weight_decay_groups(model, cfg.wd), device, cfg.lr, (cfg.beta1, cfg.beta2),
                               cfg.eps)
    precision = cfg.precision if cfg.precision != "auto" else ("amp_bf16" if device.type == "cuda" else "fp32")
    scaler = torch.amp.GradScaler("cuda") if precision == "amp" and device.type == "cuda" else None
    step, start = 0, None
    if state is not None:
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        set_optimizer_impl(optimizer, device)
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        step = state["step"]
        data = state.get("data") or {}
        # a position counts samples into an order that the seed and shuffle buffer also decide
        same_order = all(state["config"].get(k) == config[k] for k in ("seed", "shuffle_buffer"))
        if same_order and data.get("workers_total") == world * max(1, cfg.workers):
            start = {int(k): tuple(v) for k, v in data["positions"].items()}
        else:  # elastic resize or another order: the positions mean nothing now, start the next epoch afresh
            epoch = 1 + max((v[0] for v in data.get("positions", {}).values()), default=-1)
            start = {w: (epoch, 0) for w in range(world * max(1, cfg.workers))}
        if state.get("global_batch", global_batch) != global_batch:
            log.warning("the global batch changed from %d to %d samples per step (%d processes x batch %d x "
                        "accum_freq %d): the learning rate is not rescaled", state["global_batch"], global_batch,
                        world, cfg.batch_size, accum)
        log.info("resumed from %s at step %d of %d", store.url_of(where), step, total)
    del state

    size, mean, std = models.image_geometry(cfg.model)
    stream = TrainStream(store, shards, dataset=cfg.dataset, rewrites=cfg.rewrites, augment=cfg.augment,
                         texts_per_image=cfg.texts_per_image, min_words=cfg.min_words, batch_size=cfg.batch_size,
                         text_probs=cfg.text_probs,
                         model=cfg.model, image_size=size, mean=mean, std=std, crop_scale=cfg.crop_scale,
                         shuffle_buffer=cfg.shuffle_buffer, seed=cfg.seed, rank=rank, world_size=world,
                         workers=cfg.workers, start=start, max_pixels=cfg.max_image_pixels, skip_keys=found.repeated)
    loader = DataLoader(stream, batch_size=None, num_workers=cfg.workers, pin_memory=device.type == "cuda",
                        prefetch_factor=max(4, 2 * accum) if cfg.workers else None)
    net = model
    if world > 1:
        device_ids = [device.index] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    if cfg.compile:
        compile_model(net, cfg.grad_checkpointing, world > 1)
    loss_fn = build_loss(cfg, rank, world)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "amp_bf16"
                else torch.autocast(device.type, dtype=torch.float16) if precision == "amp" and device.type == "cuda"
                else contextlib.nullcontext())
    runner = StepRunner(net, model, loss_fn, autocast=autocast, scaler=scaler, distributed=world > 1)
    normalize = ImageNormalizer(mean, std, device)
    metrics = MetricsLog(store, cfg.run, total, cfg.tensorboard) if rank == 0 else None
    # this rank's workers only: the checkpoint merges every rank's dict, and another rank's start
    # positions (stale once that rank has trained) must not overwrite what it reports
    per_rank = max(1, cfg.workers)
    positions = {w: p for w, p in (start or {}).items() if w // per_rank == rank}
    counts: Counter = Counter()
    # Read on the host at log and checkpoint steps only: the losses of the window are summed on the
    # device, and the first step whose loss was not finite is kept there too.
    health = LossHealth(device)
    window, waited = Counter(), Counter()
    # The random crops draw from the global generator (and iter() seeds the loader workers from
    # it): seeded as the model was, every rank would crop alike, and every resume replay step 0's.
    torch.manual_seed(random.Random(f"loader-{cfg.seed}-{rank}-{step}").getrandbits(63))
    batches = iter(loader)
    t_window, first_window = time.perf_counter(), True
    if metrics and step == 0:
        metrics.event("start", dataset=cfg.dataset, shards=len(shards), samples=samples,
                      unreadable_parquets=len(found.unreadable), skipped_rows=sum(found.skipped_rows.values()),
                      model=cfg.model,
                      world_size=world, total_steps=total, augment=cfg.augment, loss=cfg.loss,
                      threads=torch.get_num_threads(), accum_freq=accum, global_batch=global_batch,
                      compile=cfg.compile)
    while step < total:
        micro, wait = [], 0.0
        for _ in range(accum):  # the step's sub-batches (one without accumulation)
            t0 = time.perf_counter()
            try:
                images, texts, info = next(batches)
            except LaclipError as exc:
                raise worker_error(exc) from None
            wait += time.perf_counter() - t0
            positions[info["worker"]] = (info["epoch"], info["consumed"])
            counts.update(info["stats"])
            micro.append((normalize(images.to(device, non_blocking=True)), texts.to(device, non_blocking=True)))
        lr = lr_at(step, cfg.lr, warmup, total)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        loss = runner(micro)
        del micro
        if scaler is not None and cfg.grad_clip:
            scaler.unscale_(optimizer)
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(optimizer) if scaler is not None else optimizer.step()
        if scaler is not None:
            scaler.update()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        step += 1
        health.add(loss, step)
        window.update(steps=1, wait=wait)
        logs, saves = step % cfg.log_every == 0 or step == total, step % cfg.checkpoint_every == 0 or step == total
        if logs or saves:
            health.check(world)  # the one host sync of these steps; never a checkpoint of a diverged model
        if logs:
            # on `device`: nccl has no CPU backend (gather() and barrier() find the GPU through the
            # torch.cuda.set_device of init_distributed)
            mean_loss = health.take() / window["steps"]
            if world > 1:
                dist.all_reduce(mean_loss)
                mean_loss /= world
            elapsed = time.perf_counter() - t_window
            data_wait = window["wait"] / max(elapsed, 1e-9)
            if metrics:
                metrics.write(step, {"loss": mean_loss.item(), "lr": lr, "logit_scale": model.logit_scale.exp().item(),
                                     "samples_per_s": window["steps"] * global_batch / elapsed,
                                     "data_wait": data_wait})
            if not first_window:  # the first holds the loader's start-up
                waited.update(wait=window["wait"], elapsed=elapsed)
                if rank == 0 and data_wait > cfg.data_wait_warn and not waited["warned"]:
                    waited["warned"] = 1
                    log.warning("the loader kept training waiting %.0f%% of the time over steps %d-%d (more than "
                                "data_wait_warn %.0f%%): it is the bottleneck; give it more --workers (now %d per "
                                "process, %d CPUs here) or faster storage", 100 * data_wait, step - window["steps"] + 1,
                                step, 100 * cfg.data_wait_warn, cfg.workers, len(os.sched_getaffinity(0)))
            window, t_window, first_window = Counter(), time.perf_counter(), False
        if saves:
            all_positions = {}
            for part in gather(positions, world):
                all_positions.update(part)
            if rank == 0:
                payload = {"state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
                           "scaler": scaler.state_dict() if scaler is not None else {}, "step": step,
                           "total_steps": total, "warmup_steps": warmup, "config": config,
                           "global_batch": global_batch,
                           "data": {"workers_total": world * max(1, cfg.workers),
                                    "positions": {str(k): list(v) for k, v in all_positions.items()}}}
                lease.check()  # taken over while paused? then nothing is written
                path = ckpt.save(store, cfg.run, step, payload, cfg.keep_last, replaceable=broken)
                metrics.flush()
                metrics.event("checkpoint", step=step, path=store.url_of(path))
                request_eval(cfg, store.url_of(path))
            if world > 1:
                dist.barrier()
    summary = Counter()
    for part in gather(dict(counts), world):
        summary.update(part)
    summary.update(unreadable_parquets=len(found.unreadable), skipped_rows=sum(found.skipped_rows.values()))
    if metrics:
        if waited["elapsed"]:
            summary["data_wait"] = round(waited["wait"] / waited["elapsed"], 3)
        metrics.event("done", step=step, **{k: summary[k] for k in sorted(summary)})
        metrics.close()
        bad = {k: summary[k] for k in BAD_INPUT if summary[k]}
        if bad:
            log.warning("bad input seen and skipped or trained on originals: %s", bad)
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

"""The training loop every process runs (laclip.train.main starts it): resume, count, build, step, log, save.

    _resume_state   the checkpoint this start continues from (the run's newest whole one, else --resume's)
    _count          the dataset's samples, what could not be counted reported once
    _restore        a resumed run's model, optimizer, scaler and loader positions
    train_loop      the steps: sub-batches in, one optimizer step, the loss kept on the device
    _Window         a log line per window: loss, throughput, the share of time waiting for data
    _save           a checkpoint holding every rank's loader position, written by the lease holder
    _report         what the run saw and skipped, at its end
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from collections import Counter

import torch
import torch.distributed as dist

from laclip.errors import DataError, LaclipError, UsageError
from laclip.procs import check_worker_tmpdir
from laclip.train import checkpoint as ckpt
from laclip.train import model as models
from laclip.train.config import RESUME_KEYS, TrainConfig
from laclip.train.data import StreamSpec, TrainStream
from laclip.train.eval_hook import request_eval
from laclip.train.inputs import claim_run, scan
from laclip.train.loss import build_loss
from laclip.train.metrics import MetricsLog
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


def _resume_state(cfg: TrainConfig, store, config: dict) -> tuple[dict | None, str | None, list[str]]:
    """(checkpoint state, its path, checkpoints skipped as unreadable) this start continues from: the run's
    newest whole checkpoint, else --resume's; None for a fresh start. A checkpoint of another model, loss or
    dataset is refused."""
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
    return state, where, broken


def _count(cfg: TrainConfig, store, shards, rank: int, state: dict | None):
    """The dataset's samples (laclip.train.inputs.scan), what could not be counted reported once."""
    found = scan(store, shards, cfg.scan_shards)
    if rank == 0:
        for sid, why in sorted(found.unreadable.items()):
            log.warning("parquet of shard %s left out of the sample count (its tar is still trained on): %s", sid, why)
        repeats = sum(len(v) for v in found.repeated.values())
        if repeats or found.skipped_rows:
            log.warning("dataset %r: %d keys also in an earlier shard (skipped there), bad parquet rows %s",
                        cfg.dataset, repeats, dict(found.skipped_rows) or "none")
    if not found.samples and cfg.steps is None and state is None:
        why = "; ".join(found.unreadable.values()) or "the parquets list no successful sample"
        raise DataError(f"dataset {cfg.dataset!r}: no sample could be counted to plan {cfg.epochs:g} epochs "
                        f"({why[:300]}): pass --steps N, or fix the parquets")
    return found


def _restore(cfg: TrainConfig, state: dict, config: dict, parts: tuple, world: int, global_batch: int) -> tuple:
    """(step, loader start positions) of a resumed run, its model, optimizer and scaler state loaded into
    `parts` (model, optimizer, scaler, device)."""
    model, optimizer, scaler, device = parts
    model.load_state_dict(state["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    set_optimizer_impl(optimizer, device)
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
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
                    world, cfg.batch_size, cfg.accum_freq)
    return state["step"], start


class _Window:
    """The steps since the last log line: mean loss, throughput, the share of time spent waiting for data (and
    the warning when the loader is the bottleneck)."""

    def __init__(self, cfg: TrainConfig, rank: int, world: int, global_batch: int):
        self.cfg, self.rank, self.world, self.global_batch = cfg, rank, world, global_batch
        self.counts, self.waited = Counter(), Counter()
        self.start, self.first = time.perf_counter(), True

    def add(self, wait: float) -> None:
        self.counts.update(steps=1, wait=wait)

    def log(self, step: int, health: LossHealth, lr: float, model, metrics) -> None:
        # on `device`: nccl has no CPU backend (gather() and barrier() find the GPU through the
        # torch.cuda.set_device of init_distributed)
        mean_loss = health.take() / self.counts["steps"]
        if self.world > 1:
            dist.all_reduce(mean_loss)
            mean_loss /= self.world
        elapsed = time.perf_counter() - self.start
        data_wait = self.counts["wait"] / max(elapsed, 1e-9)
        if metrics:
            metrics.write(step, {"loss": mean_loss.item(), "lr": lr, "logit_scale": model.logit_scale.exp().item(),
                                 "samples_per_s": self.counts["steps"] * self.global_batch / elapsed,
                                 "data_wait": data_wait})
        if not self.first:  # the first holds the loader's start-up
            self.waited.update(wait=self.counts["wait"], elapsed=elapsed)
            cfg = self.cfg
            if self.rank == 0 and data_wait > cfg.data_wait_warn and not self.waited["warned"]:
                self.waited["warned"] = 1
                log.warning("the loader kept training waiting %.0f%% of the time over steps %d-%d (more than "
                            "data_wait_warn %.0f%%): it is the bottleneck; give it more --workers (now %d per "
                            "process, %d CPUs here) or faster storage", 100 * data_wait,
                            step - self.counts["steps"] + 1, step, 100 * cfg.data_wait_warn, cfg.workers,
                            len(os.sched_getaffinity(0)))
        self.counts, self.start, self.first = Counter(), time.perf_counter(), False


def train_loop(cfg: TrainConfig, rank: int, world: int, device, store, shards, config: dict, lease) -> int:
    from torch.utils.data import DataLoader

    state, where, broken = _resume_state(cfg, store, config)
    if rank == 0:
        claim_run(cfg, store, shards, config)
    found = _count(cfg, store, shards, rank, state)
    total, warmup = plan_schedule(cfg, state, found.samples, world)
    accum, global_batch = cfg.accum_freq, cfg.step_samples(world)
    if global_batch < 2:  # the config refuses this for its own node count; an elastic start may have fewer
        raise UsageError(f"a step of {global_batch} sample trains nothing (the contrastive loss over a batch of 1 "
                         "is 0): use --batch-size 2 or more")
    torch.manual_seed(cfg.seed)
    model = models.create(cfg.model, device, cfg.grad_checkpointing)
    optimizer = make_optimizer(models.weight_decay_groups(model, cfg.wd), device, cfg.lr, (cfg.beta1, cfg.beta2),
                               cfg.eps)
    precision = cfg.precision if cfg.precision != "auto" else ("amp_bf16" if device.type == "cuda" else "fp32")
    scaler = torch.amp.GradScaler("cuda") if precision == "amp" and device.type == "cuda" else None
    step, start = 0, None
    if state is not None:
        step, start = _restore(cfg, state, config, (model, optimizer, scaler, device), world, global_batch)
        log.info("resumed from %s at step %d of %d", store.url_of(where), step, total)
    del state

    spec = StreamSpec.of(cfg)
    stream = TrainStream(store, shards, spec, rank=rank, world_size=world, start=start, skip_keys=found.repeated)
    check_worker_tmpdir(cfg.workers)
    loader = DataLoader(stream, batch_size=None, num_workers=cfg.workers, pin_memory=device.type == "cuda",
                        prefetch_factor=max(4, 2 * accum) if cfg.workers else None)
    net = model
    if world > 1:
        device_ids = [device.index] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    if cfg.compile:
        compile_model(net, cfg.grad_checkpointing, world > 1)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "amp_bf16"
                else torch.autocast(device.type, dtype=torch.float16) if precision == "amp" and device.type == "cuda"
                else contextlib.nullcontext())
    runner = StepRunner(net, model, build_loss(cfg, rank, world), autocast=autocast, scaler=scaler,
                        distributed=world > 1)
    normalize = ImageNormalizer(spec.mean, spec.std, device)
    metrics = MetricsLog(store, cfg.run, total, cfg.tensorboard) if rank == 0 else None
    # this rank's workers only: the checkpoint merges every rank's dict, and another rank's start
    # positions (stale once that rank has trained) must not overwrite what it reports
    per_rank = max(1, cfg.workers)
    positions = {w: p for w, p in (start or {}).items() if w // per_rank == rank}
    counts: Counter = Counter()
    # Read on the host at log and checkpoint steps only: the losses of the window are summed on the
    # device, and the first step whose loss was not finite is kept there too.
    health, window = LossHealth(device), _Window(cfg, rank, world, global_batch)
    # The random crops draw from the global generator (and iter() seeds the loader workers from
    # it): seeded as the model was, every rank would crop alike, and every resume replay step 0's.
    torch.manual_seed(random.Random(f"loader-{cfg.seed}-{rank}-{step}").getrandbits(63))
    batches = iter(loader)
    if metrics and step == 0:
        metrics.event("start", dataset=cfg.dataset, shards=len(shards), samples=found.samples,
                      unreadable_parquets=len(found.unreadable), skipped_rows=sum(found.skipped_rows.values()),
                      model=cfg.model, world_size=world, total_steps=total, augment=cfg.augment, loss=cfg.loss,
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
        window.add(wait)
        logs, saves = step % cfg.log_every == 0 or step == total, step % cfg.checkpoint_every == 0 or step == total
        if logs or saves:
            health.check(world)  # the one host sync of these steps; never a checkpoint of a diverged model
        if logs:
            window.log(step, health, lr, model, metrics)
        if saves:
            _save(cfg, rank, world, store, lease, metrics, broken, positions, {
                "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else {}, "step": step, "total_steps": total,
                "warmup_steps": warmup, "config": config, "global_batch": global_batch})
    _report(cfg, rank, world, found, counts, window.waited, metrics, step)
    return step


def _save(cfg: TrainConfig, rank: int, world: int, store, lease, metrics, broken: list[str], positions: dict,
          payload: dict) -> None:
    """A checkpoint of every rank's loader position, written by rank 0 while it still holds the run."""
    all_positions = {}
    for part in gather(positions, world):
        all_positions.update(part)
    if rank == 0:
        payload["data"] = {"workers_total": world * max(1, cfg.workers),
                           "positions": {str(k): list(v) for k, v in all_positions.items()}}
        lease.check()  # taken over while paused? then nothing is written
        path = ckpt.save(store, cfg.run, payload["step"], payload, cfg.keep_last, replaceable=broken)
        metrics.flush()
        metrics.event("checkpoint", step=payload["step"], path=store.url_of(path))
        request_eval(cfg, store.url_of(path))
    if world > 1:
        dist.barrier()


def _report(cfg: TrainConfig, rank: int, world: int, found, counts: Counter, waited: Counter, metrics,
            step: int) -> None:
    """The end of a run: what was seen, what was skipped or trained on originals."""
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

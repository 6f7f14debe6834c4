"""Contrastive gradient accumulation (laclip.train.step): one optimizer step over K sub-batches has
the gradients of one step on the whole batch, to fp32 tolerance, for both losses, on 1 process and
on 2 (real torchrun, gloo, DDP)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from laclip.train.loss import ClipLoss, MultiTextLoss

from .accum_worker import data, gradients, split, tiny_vit, worst

TOL = 2e-5  # relative to each tensor's largest gradient; fp32 sums in another order differ by ~1e-7


@pytest.mark.parametrize("loss_name, m", [("clip", 1), ("multitext", 3)])
@pytest.mark.parametrize("k", [2, 4])
def test_accumulated_step_has_the_whole_batch_gradients(loss_name, m, k):
    model = tiny_vit()
    loss_fn = MultiTextLoss(m) if loss_name == "multitext" else ClipLoss()
    images, texts = data(16, m)
    loss_whole, whole = gradients(model, model, loss_fn, [(images, texts)])
    loss_accum, accum = gradients(model, model, loss_fn, split(images, texts, k))
    assert abs(loss_accum - loss_whole) < 1e-5 * abs(loss_whole)
    assert "logit_scale" in accum  # counted once, not k times
    assert worst(accum, whole) < TOL, worst(accum, whole)
    # what the test tells apart: summing the gradients of k small steps (negatives from the
    # sub-batch only) is far from the whole batch's
    naive = {}
    for part in split(images, texts, k):
        _, g = gradients(model, model, loss_fn, [part])
        naive = {n: naive.get(n, 0) + v / k for n, v in g.items()}
    assert worst(naive, whole) > 100 * TOL


def test_second_forward_draws_the_first_ones_random_masks():
    """Patch dropout drops random tokens: the recomputed sub-batch must see the cached one's, or
    its gradient belongs to other features than the loss was computed on."""
    model = tiny_vit(patch_dropout=0.5)
    loss_fn = ClipLoss()
    parts = split(*data(16), 4)
    torch.manual_seed(3)
    _, accum = gradients(model, model, loss_fn, parts)
    # reference: each sub-batch forward once with autograd, in the same order from the same seed
    model.zero_grad(set_to_none=True)
    torch.manual_seed(3)
    outs = [model(i, t) for i, t in parts]
    loss = loss_fn(torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs]), outs[-1][2])
    loss.backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert worst(accum, reference) < TOL, worst(accum, reference)


def test_batchnorm_statistics_move_once_per_sub_batch():
    import laclip.train.model  # noqa: F401  (laclip-tiny: a ResNet tower with BatchNorm)
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model("laclip-tiny")
    bn = model.visual.bn1
    images = torch.randn(16, 3, 64, 64)
    texts = torch.randint(1, 1000, (16, 32))
    gradients(model, model, ClipLoss(), split(images, texts, 4))
    assert bn.num_batches_tracked.item() == 4  # the caching forward left them alone


@pytest.mark.slow
def test_accumulation_on_two_processes(tmp_path):
    """Real torchrun, 2 gloo processes under DDP: K = 4 sub-batches give the gradients of the whole
    per-process batch (first K-1 backward passes in no_sync, one all-reduce); with gather-with-grad
    they are also those of one process on the global batch."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(Path(__file__).with_name("accum_worker.py")), str(tmp_path)],
                          capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for rank in (0, 1):
        cases = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert set(cases) == {"clip", "clip-gather-with-grad", "clip-local-loss", "multitext"}
        for name, case in cases.items():
            assert abs(case["loss_accum"] - case["loss_whole"]) < 1e-5 * abs(case["loss_whole"]), (rank, name)
            assert case["accum_vs_whole"] < TOL, (rank, name, case)
            if name != "clip":
                assert case["accum_vs_one_process"] < TOL, (rank, name, case)

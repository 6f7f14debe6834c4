"""Losses: ClipLoss as open_clip computes it, and the multi-positive multi-text loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from laclip.train.loss import ClipLoss, MultiTextLoss


def feats(n, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=-1)


def test_multitext_with_one_text_equals_clip_loss():
    img, txt = feats(8), feats(8, seed=1)
    a = MultiTextLoss(1)(img, txt, torch.tensor(10.0))
    b = ClipLoss()(img, txt, torch.tensor(10.0))
    assert torch.allclose(a, b, atol=1e-6)


def test_pooled_multitext_treats_every_text_of_an_image_as_positive():
    n, m = 6, 3
    img = feats(n)
    # texts equal to their own image: every positive is the best match
    txt = img.repeat_interleave(m, dim=0)
    good = MultiTextLoss(m, form="pooled")(img, txt, torch.tensor(50.0))
    # the same texts assigned to the wrong images
    bad = MultiTextLoss(m, form="pooled")(img, txt.roll(m, dims=0), torch.tensor(50.0))
    # lower bound: the image's probability mass is split over its m positives
    assert good.item() < bad.item()
    assert abs(good.item() - 0.5 * math.log(m)) < 0.05


def test_multitext_gradients_flow_to_both_towers():
    img = feats(4).requires_grad_()
    txt = feats(8, seed=2).requires_grad_()
    MultiTextLoss(2)(img, txt, torch.tensor(10.0)).backward()
    assert img.grad.abs().sum() > 0 and txt.grad.abs().sum() > 0


# -- the two multi-text forms pinned to hand-worked values -------------------------------------
# Images e0, e1; image 0's texts (e0, e0), image 1's (e1, e0); logit scale 1, so a logit is a dot
# product. Paper form, slot 0 (e0 | e1): both directions are -log(e/(e+1)) = log(1 + 1/e) per row.
# Slot 1 (e0 | e0): image -> text rows [1, 1] and [0, 0]: log 2 each; text -> image: text of image 0
# scores [1, 0]: log(1 + 1/e), text of image 1 scores [1, 0] with target 1: log(1 + e) = 1 + log(1 + 1/e).
A = math.log(1 + math.exp(-1))
PAPER = (A + (math.log(2) + (A + (1 + A)) / 2) / 2) / 2
# Pooled: image 0 over texts (e0, e0, e1, e0) scores [1, 1, 0, 1], positives 0, 1: log(3e + 1) - 1 each;
# image 1 scores [0, 0, 1, 0], positives 2, 3: log(e + 3) - 1 and log(e + 3). Text -> image: three texts
# at log(1 + 1/e), the last at log(1 + e).
E = math.e
POOLED_I = (2 * (math.log(3 * E + 1) - 1) + (math.log(E + 3) - 1) + math.log(E + 3)) / 4
POOLED_T = (3 * A + (1 + A)) / 4
POOLED = (POOLED_I + POOLED_T) / 2


def test_multitext_forms_match_the_hand_worked_batch():
    from tests.train.loss_worker import IMAGES, TEXTS

    scale = torch.tensor(1.0)
    assert MultiTextLoss(2, form="paper")(IMAGES, TEXTS, scale).item() == pytest.approx(PAPER, abs=1e-6)
    assert MultiTextLoss(2, form="pooled")(IMAGES, TEXTS, scale).item() == pytest.approx(POOLED, abs=1e-6)
    # the paper's form is the mean of CLIP losses over the text slots
    slots = TEXTS.view(2, 2, 2)
    per_slot = [ClipLoss()(IMAGES, slots[:, j], scale) for j in range(2)]
    assert PAPER == pytest.approx(sum(per_slot).item() / 2, abs=1e-6)
    with pytest.raises(ValueError, match="form"):
        MultiTextLoss(2, form="other")


def test_paper_form_reaches_zero_where_pooled_cannot():
    n, m = 6, 3
    img = feats(n)
    txt = img.repeat_interleave(m, dim=0)
    assert MultiTextLoss(m, form="paper")(img, txt, torch.tensor(100.0)).item() < 0.05
    assert MultiTextLoss(m, form="pooled")(img, txt, torch.tensor(100.0)).item() > 0.5 * math.log(m) - 0.05


@pytest.mark.slow
@pytest.mark.parametrize("procs", [1, 2])
def test_multitext_forms_on_one_and_two_processes(procs, tmp_path):
    """Real torchrun on gloo: each rank holds one image and its two texts; gathered, every rank
    computes the batch's loss; with local loss the ranks' mean is it."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           str(procs), str(repo / "tests/train/loss_worker.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"{r}.json").read_text()) for r in range(procs)]
    for form, value in (("paper", PAPER), ("pooled", POOLED)):
        assert all(r[f"{form}-global"] == pytest.approx(value, abs=1e-6) for r in ranks)
        local = sum(r[f"{form}-local"] for r in ranks) / procs
        assert local == pytest.approx(value, abs=1e-6)

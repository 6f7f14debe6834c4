"""Losses: ClipLoss as open_clip computes it, and the multi-positive multi-text loss."""

from __future__ import annotations

import math

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


def test_multitext_treats_every_text_of_an_image_as_positive():
    n, m = 6, 3
    img = feats(n)
    # texts equal to their own image: every positive is the best match
    txt = img.repeat_interleave(m, dim=0)
    good = MultiTextLoss(m)(img, txt, torch.tensor(50.0))
    # the same texts assigned to the wrong images
    bad = MultiTextLoss(m)(img, txt.roll(m, dims=0), torch.tensor(50.0))
    # lower bound: the image's probability mass is split over its m positives
    assert good.item() < bad.item()
    assert abs(good.item() - 0.5 * math.log(m)) < 0.05


def test_multitext_gradients_flow_to_both_towers():
    img = feats(4).requires_grad_()
    txt = feats(8, seed=2).requires_grad_()
    MultiTextLoss(2)(img, txt, torch.tensor(10.0)).backward()
    assert img.grad.abs().sum() > 0 and txt.grad.abs().sum() > 0

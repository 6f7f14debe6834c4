"""Contrastive losses: open_clip's ClipLoss, and the paper's multi-text variant (LaCLIP-MT).

Multi-text: each of the N images in the batch comes with M texts (image-major order, texts
i*M .. i*M+M-1 belong to image i). Image -> text: a softmax over all N*M texts where every text
of the image is a positive (the loss averages -log p over the M positives). Text -> image: a
softmax over the N images with the text's own image as the one positive.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss, gather_features

__all__ = ["ClipLoss", "MultiTextLoss", "build_loss"]


class MultiTextLoss(torch.nn.Module):
    def __init__(self, texts_per_image: int, local_loss: bool = False, gather_with_grad: bool = False,
                 rank: int = 0, world_size: int = 1):
        super().__init__()
        self.m, self.local_loss, self.gather_with_grad = texts_per_image, local_loss, gather_with_grad
        self.rank, self.world_size = rank, world_size

    def forward(self, image_features, text_features, logit_scale):
        n, m = image_features.shape[0], self.m
        if text_features.shape[0] != n * m:
            raise ValueError(f"multitext loss: {text_features.shape[0]} texts for {n} images x {m}")
        if self.world_size > 1:
            # gather_features wants equal first dims: view texts as [N, M*D] while gathering
            d = text_features.shape[1]
            all_img, all_txt = gather_features(image_features, text_features.reshape(n, m * d),
                                               self.local_loss, self.gather_with_grad, self.rank, self.world_size)
            all_txt = all_txt.reshape(-1, d)
        else:
            all_img, all_txt = image_features, text_features
        if self.local_loss or self.world_size == 1:
            img, txt, offset = image_features, text_features, (n * self.rank if self.world_size > 1 else 0)
        else:
            img, txt, offset = all_img, all_txt, 0
        owner = torch.arange(txt.shape[0], device=txt.device) // m + offset  # image index of each text
        # image -> text: mean log-likelihood of the image's own M texts among all texts
        logits_i = logit_scale * img @ all_txt.T
        logp = F.log_softmax(logits_i, dim=1)
        rows = torch.arange(img.shape[0], device=img.device)
        cols = (rows + offset).unsqueeze(1) * m + torch.arange(m, device=img.device)
        loss_i = -logp.gather(1, cols).mean()
        # text -> image: each text's own image is its positive
        logits_t = logit_scale * txt @ all_img.T
        loss_t = F.cross_entropy(logits_t, owner)
        return (loss_i + loss_t) / 2


def build_loss(cfg, rank: int, world_size: int) -> torch.nn.Module:
    if cfg.loss == "multitext":
        return MultiTextLoss(cfg.texts_per_image, cfg.local_loss, cfg.gather_with_grad, rank, world_size)
    return ClipLoss(local_loss=cfg.local_loss, gather_with_grad=cfg.gather_with_grad, cache_labels=True,
                    rank=rank, world_size=world_size)

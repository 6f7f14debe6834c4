"""Contrastive losses: open_clip's ClipLoss, and the multi-text loss of LaCLIP-MT in two forms.

Multi-text: each of the N images of the (global) batch comes with M texts, in image-major order
(texts i*M .. i*M+M-1 belong to image i). Write s(i, t) = logit_scale * <image i, text t>
(unit vectors) and t_{i,j} for the j-th text of image i.

`paper` (the default) is LaCLIP-MT as the paper writes it (Fan et al., NeurIPS 2023, "Improving
CLIP Training with Language Rewrites", the multi-text variant): the CLIP loss is taken once per
text slot j, pairing every image with its own j-th text against the other images' j-th texts,
and the M losses are averaged:

    L = 1/M sum_j 1/2 [ -1/N sum_i log softmax_k s(i, t_{k,j})[k=i]
                        -1/N sum_i log softmax_k s(k, t_{i,j})[k=i] ]

so each softmax has N candidates, as in CLIP, and a model that matches every text to its own
image drives it to 0. With M = 1 it is the CLIP loss.

`pooled` (what laclip's `multitext` loss computed before, kept as a named option): one softmax
over all N*M texts per image with every one of the image's M texts a positive (image -> text:
the mean of -log p over the M positives), and text -> image over the N images. It sees M times
as many negatives per image row, but its image -> text term cannot go below log M (the image's
probability mass is shared by its M positives), so it also pulls an image's texts towards one
another. It is a multi-positive (SupCon-like) loss, not the paper's equation.

Both are functions of the whole batch's features (what gradient accumulation needs): the
features of all ranks are gathered first (open_clip's gather_features); with local_loss each
rank scores its own rows against everything, and the mean over ranks is the global loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss, gather_features

__all__ = ["ClipLoss", "MultiTextLoss", "build_loss", "FORMS"]

FORMS = ("paper", "pooled")


class MultiTextLoss(torch.nn.Module):
    def __init__(self, texts_per_image: int, local_loss: bool = False, gather_with_grad: bool = False,
                 rank: int = 0, world_size: int = 1, form: str = "paper"):
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"multi-text loss form {form!r}: choose one of {', '.join(FORMS)}")
        self.m, self.local_loss, self.gather_with_grad = texts_per_image, local_loss, gather_with_grad
        self.rank, self.world_size, self.form = rank, world_size, form

    def _gathered(self, image_features, text_features):
        """(all images (N, D), all texts (N*M, D), local images, local texts, offset of the local rows)."""
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
            return all_img, all_txt, image_features, text_features, (n * self.rank if self.world_size > 1 else 0)
        return all_img, all_txt, all_img, all_txt, 0

    def forward(self, image_features, text_features, logit_scale):
        all_img, all_txt, img, txt, offset = self._gathered(image_features, text_features)
        m = self.m
        if self.form == "paper":
            d = all_txt.shape[1]
            slots_all, slots = all_txt.view(-1, m, d), txt.view(-1, m, d)
            target = torch.arange(img.shape[0], device=img.device) + offset
            total = 0.0
            for j in range(m):  # one CLIP loss per text slot
                loss_i = F.cross_entropy(logit_scale * img @ slots_all[:, j].T, target)
                loss_t = F.cross_entropy(logit_scale * slots[:, j] @ all_img.T, target)
                total = total + (loss_i + loss_t) / 2
            return total / m
        owner = torch.arange(txt.shape[0], device=txt.device) // m + offset  # image index of each text
        # image -> text: mean log-likelihood of the image's own M texts among all texts
        logp = F.log_softmax(logit_scale * img @ all_txt.T, dim=1)
        rows = torch.arange(img.shape[0], device=img.device)
        cols = (rows + offset).unsqueeze(1) * m + torch.arange(m, device=img.device)
        loss_i = -logp.gather(1, cols).mean()
        # text -> image: each text's own image is its positive
        loss_t = F.cross_entropy(logit_scale * txt @ all_img.T, owner)
        return (loss_i + loss_t) / 2


def build_loss(cfg, rank: int, world_size: int) -> torch.nn.Module:
    if cfg.loss == "multitext":
        return MultiTextLoss(cfg.texts_per_image, cfg.local_loss, cfg.gather_with_grad, rank, world_size,
                             form=cfg.multitext_form)
    return ClipLoss(local_loss=cfg.local_loss, gather_with_grad=cfg.gather_with_grad, cache_labels=True,
                    rank=rank, world_size=world_size)

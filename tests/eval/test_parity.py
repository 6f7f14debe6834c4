"""Zero-shot top-1 equals CLIP_benchmark's on the same model object, templates, class names and split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from laclip.eval.config import EvalConfig
from laclip.eval.datasets import open_eval_dataset
from laclip.eval.features import compute_image_features, load_model
from laclip.eval.zeroshot import class_embeddings, evaluate


def _peer_accuracy(output, target, topk=(1,)):
    """CLIP_benchmark's own top-k formula; its `float(ndarray of shape (1,))` fails under numpy 2.4."""
    pred = output.topk(max(topk), 1, True, True)[1].t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    return [correct[:k].reshape(-1).float().sum().item() / len(target) for k in topk]


@pytest.mark.parametrize("seed", [0, 3])
def test_zeroshot_matches_clip_benchmark(ckpt_store, seed, monkeypatch):
    from clip_benchmark.datasets.builder import build_dataset
    from clip_benchmark.metrics import zeroshot_classification as cb

    monkeypatch.setattr(cb, "accuracy", _peer_accuracy)

    from .conftest import TINY, save_checkpoint

    save_checkpoint(ckpt_store, "parity", seed, TINY, seed=seed)
    cfg = EvalConfig.for_checkpoint(f"parity/step_{seed}", root=str(ckpt_store.local_path("")), workers=0)
    lm = load_model(cfg)
    ds = open_eval_dataset(ckpt_store, "demo-eval")
    feats = compute_image_features(lm, ds, "test", batch_size=32)
    classnames, templates = ds.classnames(), ds.templates()
    ours = evaluate(lm, feats.features, feats.labels, classnames, templates)

    peer_ds = build_dataset("wds/demo-eval", root=str(ckpt_store.local_path("datasets/demo-eval")),
                            transform=lm.preprocess, split="test", task="zeroshot_classification")
    assert peer_ds.classes == classnames and peer_ds.templates == templates
    loader = torch.utils.data.DataLoader(peer_ds.batched(32), batch_size=None, num_workers=0)
    loader.dataset.classes = peer_ds.classes  # cb.evaluate reads it off the loader's dataset
    peer = cb.evaluate(lm.model, loader, lm.tokenizer, classnames, templates, device="cpu", amp=False)

    assert len(feats.labels) == 80
    assert abs(100 * ours["acc1"] - 100 * peer["acc1"]) <= 0.1
    assert abs(100 * ours["acc5"] - 100 * peer["acc5"]) <= 0.1
    assert ours["mean_per_class_recall"] == pytest.approx(peer["mean_per_class_recall"], abs=1e-3)

    # Stronger than equal accuracy: the same prediction for every image.
    classifier = cb.zero_shot_classifier(lm.model, lm.tokenizer, classnames, templates, "cpu", amp=False)
    logits, target = cb.run_classification(lm.model, classifier, loader, "cpu", amp=False)
    mine = 100 * torch.as_tensor(feats.features) @ class_embeddings(lm, classnames, templates).T
    assert np.array_equal(target.numpy(), feats.labels)
    agree = (logits.argmax(1) == mine.argmax(1)).float().mean().item()
    assert agree == 1.0
    assert torch.allclose(logits, mine, atol=1e-3)

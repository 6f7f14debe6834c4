"""Zero-shot evaluation throughput: laclip's eval vs CLIP_benchmark on the same checkpoint and data.

Both start from the same webdataset tar (CLIP_benchmark layout), the same open_clip model object,
transform, tokenizer, class names and templates, and end with top-1/top-5/mean-per-class recall;
model loading is excluded. laclip's feature cache is off, so every run decodes every image.
Runs alternate between the two; the median of each is reported with the ratio.

    python -m bench.eval_zeroshot [--images-per-class 250] [--runs 5] [--workers 0] [--batch-size 256] [--shards 2]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time

from laclip import layout
from laclip.storage.base import join


def make_data(root: str, per_class: int, model_name: str, shards: int = 1):
    import torch

    from laclip.data.synth import synth_demo
    from laclip.storage import open_store

    store = open_store(root)
    synth_demo(store, shards=1, per_shard=8, eval_train_per_class=1, eval_test_per_class=per_class)
    if shards > 1:
        from laclip.eval.datasets import reshard

        reshard(store, join(layout.dataset_folder("demo-eval"), "test"), shards)
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model(model_name)
    buf = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "config": {"model": model_name}}, buf)
    store.write_bytes(layout.checkpoint("bench", 0), buf.getvalue())
    return store


def peer_accuracy(output, target, topk=(1,)):
    """CLIP_benchmark's formula; its float(ndarray) conversion fails under numpy >= 2.4."""
    pred = output.topk(max(topk), 1, True, True)[1].t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    return [correct[:k].reshape(-1).float().sum().item() / len(target) for k in topk]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images-per-class", type=int, default=250)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--shards", type=int, default=2, help="test-split tars (>= workers: CLIP_benchmark needs it)")
    args = ap.parse_args()

    import torch
    from clip_benchmark.datasets.builder import build_dataset
    from clip_benchmark.metrics import zeroshot_classification as cb

    from laclip.eval.config import EvalConfig
    from laclip.eval.datasets import open_eval_dataset
    from laclip.eval.features import compute_image_features, load_model
    from laclip.eval.zeroshot import evaluate

    try:
        import laclip.train.model  # noqa: F401  registers laclip-tiny
        model_name = "laclip-tiny"
    except ImportError:
        model_name = "RN50"  # any built-in architecture works: weights are random either way
    cb.accuracy = peer_accuracy
    root = tempfile.mkdtemp(prefix="bench-eval-")
    store = make_data(root, args.images_per_class, model_name, args.shards)
    cfg = EvalConfig.for_checkpoint("bench/step_0", root=root, cache_features=False)
    lm = load_model(cfg)
    ds = open_eval_dataset(store, "demo-eval")
    classnames, templates = ds.classnames(), ds.templates()
    n = len(classnames) * args.images_per_class

    def ours():
        feats = compute_image_features(lm, ds, "test", args.batch_size, args.workers)
        return evaluate(lm, feats.features, feats.labels, classnames, templates)

    def peer():
        data = build_dataset("wds/demo-eval", root=f"{root}/{layout.dataset_folder('demo-eval')}",
                             transform=lm.preprocess,
                             split="test", task="zeroshot_classification")
        loader = torch.utils.data.DataLoader(data.batched(args.batch_size), batch_size=None,
                                             num_workers=args.workers)
        loader.dataset.classes = data.classes
        return cb.evaluate(lm.model, loader, lm.tokenizer, classnames, templates, device="cpu", amp=False)

    times: dict[str, list[float]] = {"laclip": [], "clip_benchmark": []}
    metrics = {}
    for _ in range(args.runs):
        for name, fn in (("laclip", ours), ("clip_benchmark", peer)):
            start = time.perf_counter()
            metrics[name] = fn()
            times[name].append(time.perf_counter() - start)
    rate = {k: n / statistics.median(v) for k, v in times.items()}
    print(json.dumps({
        "images": n, "shards": args.shards, "model": model_name, "batch_size": args.batch_size, "workers": args.workers,
        "torch_threads": torch.get_num_threads(), "runs": args.runs,
        "median_s": {k: round(statistics.median(v), 3) for k, v in times.items()},
        "images_per_s": {k: round(v, 1) for k, v in rate.items()},
        "ratio": round(rate["laclip"] / rate["clip_benchmark"], 3),
        "acc1": {k: round(100 * m["acc1"], 2) for k, m in metrics.items()},
    }, indent=2))


if __name__ == "__main__":
    main()

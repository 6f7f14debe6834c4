"""GPU figures, each measured side by side with its peer in the same run (one GPU, about 5 minutes):

- train: training samples/s of ViT-B/16 and ViT-B/32 in bf16 (amp_bf16), laclip's trainer vs
  `open_clip_train.main`, the same batch per GPU, the same shards (8 shards shaped like an
  img2dataset download: 256 px JPEGs at quality 95, bench/_real_shards.py), the same crop, AdamW,
  8 loader workers each. Each trainer runs as its own process; the rate is counted between its
  progress lines as they arrive here (the second to the last, so start-up and the first steps'
  warm-up are left out), one clock for both.
- eval: zero-shot images/s of ViT-B/16 (random weights) in bf16, laclip's eval vs CLIP_benchmark,
  on the same CLIP_benchmark-layout tars of 256 px photos, batch 256, 8 loader workers each.
- rewrite: the `hf` engine's captions/s through the whole rewrite worker (4 prompts per caption, one
  per source, batch 100 as in the paper) on a LLaMA-7B-shaped model with random weights in bf16,
  built on the GPU; prompts are the worker's real ones (instruction, 3 example pairs, caption);
  generation is fixed at 77 new tokens (the reference's maximum; random weights never stop at a
  newline) and at 32 (about where real rewrites stop). No peer: the paper's 16 captions/s per A100
  (reference code, LLaMA-7B) is printed beside it.

    python -m bench.gpu [--out bench-gpu.json] [--parts train,eval,rewrite] [--batch 128]
    python -m bench.gpu --toy        # CPU, toy sizes, well under a minute (tests/test_bench.py)

It writes every number to --out (JSON) and prints a short table last. --toy checks that the whole
script runs (tiny models, fp32, a few steps); its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time

from bench._train_common import MODEL, peer_model, require_peer_webdataset
from laclip import layout
from laclip.storage.base import join

FULL = dict(models=("ViT-B-16", "ViT-B-32"), steps=60, log_every=10, workers=8, shards=8, per_shard=1280,
            precision="amp_bf16", eval_model="ViT-B-16", eval_images=8192, eval_batch=256, captions=100,
            new_tokens=(77, 32), tokenizer_vocab=512)
TOY = dict(models=("laclip-tiny",), steps=4, log_every=1, workers=1, shards=2, per_shard=32, precision="fp32",
           eval_model="laclip-tiny", eval_images=32, eval_batch=16, captions=2, new_tokens=(4,), tokenizer_vocab=512)
PEER_LINE = re.compile(r"Train Epoch: \d+ \[\s*(\d+)/")


def timed_lines(cmd: list[str], env: dict, timeout: float) -> tuple[int, list[tuple[float, str]]]:
    """Run cmd; every output line with the time it arrived here."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines: list[tuple[float, str]] = []

    def read():
        for line in proc.stdout:
            lines.append((time.perf_counter(), line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    reader.join(5)
    return rc, lines


def rate(points: list[tuple[float, int]]) -> float | None:
    """Samples per second from (arrival time, samples done), second point to last."""
    if len(points) < 3:
        return None
    (t0, n0), (t1, n1) = points[1], points[-1]
    return (n1 - n0) / (t1 - t0) if t1 > t0 else None


def train_part(p: dict, batch: int, root: str, env: dict, device: str) -> list[dict]:
    from bench._real_shards import DATASET, real_store
    from laclip.train.config import TrainConfig

    store = real_store(root=root, shards=p["shards"], per_shard=p["per_shard"])
    folder = store.local_path(layout.dataset_folder(DATASET))
    tars = f"{{{0:05d}..{p['shards'] - 1:05d}}}"
    steps, rows = p["steps"], []
    require_peer_webdataset()
    for model in p["models"]:
        cfg = TrainConfig(run=f"gpu-{model}-{time.time_ns()}", root=store.url, dataset=DATASET, rewrites="bench",
                          model=model, batch_size=batch, steps=steps, lr=5e-4, wd=0.1, warmup_steps=10,
                          workers=p["workers"], crop_scale=(0.9, 1.0), precision=p["precision"],
                          checkpoint_every=10**6, log_every=p["log_every"], tensorboard=False, shuffle_buffer=1000)
        ours_cmd = [sys.executable, "-m", "laclip.train.main", "--config", cfg.model_dump_json()]
        logs = tempfile.mkdtemp(prefix="bench-gpu-peer-")
        peer_cmd = [sys.executable, "-m", "open_clip_train.main", "--train-data", f"{folder}/{tars}.tar",
                    "--train-num-samples", str(steps * batch), "--dataset-type", "webdataset", "--batch-size",
                    str(batch), "--model", peer_model() if model == MODEL else model, "--epochs", "1",
                    "--workers", str(p["workers"]), "--lr", "5e-4",
                    "--wd", "0.1", "--warmup", "10", "--precision", p["precision"], "--save-frequency", "0",
                    "--logs", logs, "--name", f"peer-{time.time_ns()}", "--log-every-n-steps", str(p["log_every"]),
                    "--report-to", "", "--seed", "0", "--device", device]
        row = {"model": model, "batch": batch, "steps": steps, "precision": p["precision"]}
        for side, cmd in (("laclip", ours_cmd), ("open_clip_train", peer_cmd)):
            rc, lines = timed_lines(cmd, env, timeout=600)
            if rc != 0:
                raise SystemExit(f"{side} {model} failed (exit {rc}):\n" + "\n".join(x for _, x in lines[-40:]))
            points = []
            for t, line in lines:
                if side == "laclip" and line.startswith("{") and '"event": "train"' in line:
                    points.append((t, json.loads(line)["step"] * batch))
                elif side == "open_clip_train" and (m := PEER_LINE.search(line)):
                    points.append((t, int(m.group(1))))
            row[side] = rate(points)
            row[f"{side}_points"] = len(points)
        row["ratio"] = row["laclip"] / row["open_clip_train"] if row["laclip"] and row["open_clip_train"] else None
        rows.append(row)
    return rows


def write_eval_set(store, name: str, images: int, shards: int) -> None:
    """A CLIP_benchmark-layout test split of 256 px photos (8 labels, 10 templates)."""
    import io
    import tarfile

    from bench._real_shards import photo
    from laclip.data.synth import EVAL_TEMPLATES, SHAPES

    folder = layout.dataset_folder(name)
    for s in range(shards):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for n in range(s, images, shards):
                for ext, data in (("jpg", photo(f"eval:{n}")[0]), ("cls", str(n % len(SHAPES)).encode())):
                    info = tarfile.TarInfo(f"s{n:06d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        store.write_bytes(join(folder, "test", f"{s}.tar"), buf.getvalue())
    store.write_text(join(folder, "test", "nshards.txt"), f"{shards}\n")
    store.write_text(join(folder, "classnames.txt"), "\n".join(SHAPES) + "\n")
    store.write_text(join(folder, "zeroshot_classification_templates.txt"), "\n".join(EVAL_TEMPLATES) + "\n")


def eval_part(p: dict, root: str, device: str, runs: int) -> dict:
    import io
    import statistics

    import open_clip
    import torch
    from clip_benchmark.datasets.builder import build_dataset
    from clip_benchmark.metrics import zeroshot_classification as cb

    import laclip.train.model  # noqa: F401  (laclip-tiny)
    from bench.eval_zeroshot import peer_accuracy
    from laclip.eval.config import EvalConfig
    from laclip.eval.datasets import open_eval_dataset
    from laclip.eval.features import compute_image_features, load_model
    from laclip.eval.zeroshot import evaluate
    from laclip.storage import open_store

    store = open_store(root)
    write_eval_set(store, "photos-eval", p["eval_images"], p["workers"])
    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save({"state_dict": open_clip.create_model(p["eval_model"]).state_dict(),
                "config": {"model": p["eval_model"]}}, buf)
    store.write_bytes(layout.checkpoint("bench-gpu", 0), buf.getvalue())
    amp = p["precision"] != "fp32"
    cfg = EvalConfig.for_checkpoint("bench-gpu/step_0", root=root, cache_features=False, device=device,
                                    precision="amp" if amp else "fp32")
    lm = load_model(cfg)
    ds = open_eval_dataset(store, "photos-eval")
    classnames, templates = ds.classnames(), ds.templates()
    cb.accuracy = peer_accuracy  # its float(ndarray) fails under numpy >= 2.4; same formula
    if amp and device.startswith("cuda"):
        torch.set_autocast_dtype("cuda", torch.bfloat16)  # CLIP_benchmark's autocast: bf16 too, not fp16

    def ours():
        feats = compute_image_features(lm, ds, "test", p["eval_batch"], p["workers"])
        return evaluate(lm, feats.features, feats.labels, classnames, templates)

    def peer():
        data = build_dataset("wds/photos-eval", root=f"{root}/{layout.dataset_folder('photos-eval')}",
                             transform=lm.preprocess, split="test", task="zeroshot_classification")
        loader = torch.utils.data.DataLoader(data.batched(p["eval_batch"]), batch_size=None,
                                             num_workers=p["workers"])
        loader.dataset.classes = data.classes
        return cb.evaluate(lm.model, loader, lm.tokenizer, classnames, templates, device=lm.device.type, amp=amp)

    times: dict[str, list[float]] = {"laclip": [], "clip_benchmark": []}
    acc = {}
    for _ in range(runs):
        for name, fn in (("laclip", ours), ("clip_benchmark", peer)):
            start = time.perf_counter()
            acc[name] = fn()["acc1"]
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    med = {k: p["eval_images"] / statistics.median(v) for k, v in times.items()}
    return {"model": p["eval_model"], "images": p["eval_images"], "batch": p["eval_batch"], "workers": p["workers"],
            "precision": "bf16" if amp else "fp32", "runs": runs, "seconds": times, "images_per_s": med,
            "ratio": med["laclip"] / med["clip_benchmark"], "acc1": acc}


def rewrite_part(p: dict, toy: bool, device: str) -> list[dict]:
    import statistics

    import torch

    from bench.rewrite_pipeline import captions, make_store, run_once
    from laclip.rewrite.config import BUILTIN_SOURCES, RewriteConfig, Sampling
    from laclip.rewrite.engines.hf import HFEngine
    from laclip.rewrite.prompts import PromptBuilder, load_meta_pairs
    from laclip.rewrite.tiny_model import corpus, make_tiny_llama, train_tokenizer

    n = p["captions"]
    store = make_store(n)
    tok = train_tokenizer(corpus() + captions(n), p["tokenizer_vocab"])
    builder = PromptBuilder(load_meta_pairs(list(BUILTIN_SOURCES)), "bench", 0)
    prompts = [builder.build("00000", f"{i:09d}", s, c)[0] for i, c in enumerate(captions(n)) if c
               for s in BUILTIN_SOURCES]
    prompt_tokens = statistics.mean(len(tok(x)["input_ids"]) for x in prompts)
    if toy:
        folder = make_tiny_llama(tempfile.mkdtemp(prefix="bench-gpu-llama-"), corpus() + captions(n))
        loaded, label = None, str(folder)
    else:
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                          num_attention_heads=32, max_position_embeddings=2048, bos_token_id=tok.bos_token_id,
                          eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        torch.manual_seed(0)
        with torch.device(device):
            model = LlamaForCausalLM._from_config(cfg, dtype=torch.bfloat16)
        loaded, label = (model, tok), "LLaMA-7B shape, random weights"
    rows = []
    for new in p["new_tokens"]:
        sampling = Sampling(max_new_tokens=new)
        engine = HFEngine(label, sampling, device=device, fixed_length=True, loaded=loaded)
        if loaded is None:
            loaded = (engine.model, engine.tokenizer)
        rcfg = RewriteConfig(dataset="bench", engine="hf", model=label, sampling=sampling, batch_size=100)
        if not toy:
            run_once(store, rcfg, engine, f"warm-{new}")  # first batches: allocator and kernel warm-up
        result = run_once(store, rcfg, engine, f"gpu-{new}")
        info = engine.info()
        rows.append({"model": label, "parameters": info["parameters"], "dtype": info["dtype"], "device": device,
                     "new_tokens": new, "prompt_tokens_mean": round(prompt_tokens, 1), "captions": result["n"],
                     "prompts": result["prompts"], "seconds": result["wall"],
                     "captions_per_s": result["n"] / result["wall"],
                     "prompts_per_s": result["prompts"] / result["wall"]})
    return rows


def table(results: dict) -> list[str]:
    out = ["| what | laclip | peer | ratio |", "|---|---|---|---|"]
    fmt = lambda v: f"{v:,.1f}" if isinstance(v, (int, float)) else "-"  # noqa: E731
    for r in results.get("train", []):
        out.append(f"| train {r['model']} {r['precision']}, batch {r['batch']}: samples/s | {fmt(r['laclip'])} | "
                   f"{fmt(r['open_clip_train'])} (open_clip_train) | {fmt(r['ratio'])}x |")
    if "eval" in results:
        e = results["eval"]
        out.append(f"| zero-shot {e['model']} {e['precision']}: images/s | {fmt(e['images_per_s']['laclip'])} | "
                   f"{fmt(e['images_per_s']['clip_benchmark'])} (CLIP_benchmark) | {fmt(e['ratio'])}x |")
    for r in results.get("rewrite", []):
        out.append(f"| rewrite hf, {r['model']}, {r['new_tokens']} new tokens, prompts ~{r['prompt_tokens_mean']:.0f} "
                   f"tokens: captions/s (x4 prompts) | {fmt(r['captions_per_s'])} | 16 (the paper, per A100) | "
                   f"{fmt(r['captions_per_s'] / 16)}x |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--toy", action="store_true", help="CPU, toy sizes: checks the script runs")
    ap.add_argument("--out", default=None, help="JSON with every number [default: bench-gpu-<time>.json here]")
    ap.add_argument("--parts", default="train,eval,rewrite")
    ap.add_argument("--batch", type=int, default=None, help="training batch per GPU [default: 128; toy 8]")
    ap.add_argument("--eval-runs", type=int, default=None, help="runs of each evaluator, alternating; the median "
                    "[default: 3; toy 1]")
    args = ap.parse_args()
    import torch

    p = TOY if args.toy else FULL
    device = "cuda" if torch.cuda.is_available() and not args.toy else "cpu"
    if device == "cpu" and not args.toy:
        raise SystemExit("no GPU here: run this on a machine with one (or --toy to check the script on CPU)")
    parts = [x for x in args.parts.split(",") if x]
    unknown = set(parts) - {"train", "eval", "rewrite"}
    if unknown:
        raise SystemExit(f"unknown --parts {', '.join(sorted(unknown))}: choose from train, eval, rewrite")
    batch = args.batch or (8 if args.toy else 128)
    results = {"toy": args.toy, "device": torch.cuda.get_device_name(0) if device == "cuda" else platform.processor()
               or platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__,
               "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    root = tempfile.mkdtemp(prefix="bench-gpu-")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "LACLIP_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    if "train" in parts:
        results["train"] = train_part(p, batch, root, env, device)
    if "eval" in parts:
        results["eval"] = eval_part(p, root, device, args.eval_runs or (1 if args.toy else 3))
    if "rewrite" in parts:
        results["rewrite"] = rewrite_part(p, args.toy, device)
    results["seconds"] = round(time.perf_counter() - t0, 1)
    out = args.out or f"bench-gpu-{time.strftime('%Y%m%d-%H%M%S')}.json"
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"device: {results['device']} ({results['cpus']} CPUs), torch {results['torch']}, "
          f"{results['seconds']} s{' (toy sizes: the figures mean nothing)' if args.toy else ''}; all numbers in {out}")
    print("\n".join(table(results)))


if __name__ == "__main__":
    main()

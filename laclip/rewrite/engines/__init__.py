"""Engines by name, in one registry: each declares what it is built from (its class, imported only when
it runs: vllm is not installed outside the rewrite image, torch not in the CLI install), the
--engine-option keys its constructor takes (tests/rewrite/test_engines.py keeps the two in step),
the pip extra its module needs, and what it needs beside itself. Nothing outside this package asks
an engine's name."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from laclip.errors import UsageError
from laclip.rewrite.engines.base import Engine, EngineError, NullEngine, Request
from laclip.rewrite.wordnet import OPERATIONS

__all__ = ["ENGINES", "Engine", "EngineError", "EngineSpec", "Request", "make_engine", "spec"]


def _is_operations(value: str) -> bool:
    names = [n.strip() for n in value.split(",")]
    return any(names) and all(n in OPERATIONS for n in names if n)


# An option: (type, check or None, the rule a refusal states)
_FRACTION = (float, lambda v: 0 < v <= 1, "a fraction in (0, 1]")
_BOOL = (bool, None, "true or false")
_DEVICE = (str, lambda v: re.fullmatch(r"cpu|mps|cuda(:\d+)?", v), "cpu, cuda, cuda:N or mps")
_LANGUAGE = (str, lambda v: re.fullmatch(r"[A-Za-z][A-Za-z ()-]{0,39}", v), "a language name such as German")


@dataclass(frozen=True)
class EngineSpec:
    name: str
    cls: str  # "module:Class"
    build: Callable[[Any, dict], Engine]  # (RewriteConfig, engine options) -> the engine, loaded
    options: dict[str, tuple] = field(default_factory=dict)  # --engine-option KEY: (type, check, rule)
    passed: tuple[str, ...] = ()  # constructor arguments laclip fills from the config itself
    extra: str | None = None  # the pip extra its module imports (pyproject's [rewrite], [vllm])
    needs: dict[str, str] = field(default_factory=dict)  # config field -> how a refusal names it
    llm: bool = False  # continues prompts with a model: --model and the sampling decide its outputs
    model_dirs: bool = False  # its models are local checkpoint folders (checked before a local run)
    gpu: bool = False  # runs on the pod's GPUs (`laclip plan` estimates it)
    default_model: bool = False  # on a cluster, --model defaults to the store's models/ folder
    secret_env: dict[str, tuple[str, str]] = field(default_factory=dict)  # env -> (Secret, key) in its pods
    identity: Callable[[Any], dict] = lambda cfg: {}  # what else of the config decides its outputs


def _module(spec_: str):
    import importlib

    module, _, name = spec_.partition(":")
    return getattr(importlib.import_module(module), name)


def _eda(cfg, opts):
    # the operations the rewrite id names, every one of them, or a permanent error
    return _module(ENGINES["eda"].cls)(**{**opts, "operations": ",".join(cfg.eda_operations())})


ENGINES: dict[str, EngineSpec] = {s.name: s for s in (
    EngineSpec("vllm", "laclip.rewrite.engines.vllm:VLLMEngine", extra="vllm", llm=True, gpu=True, default_model=True,
               needs={"model": "--model (a checkpoint folder or model id)"},
               passed=("model", "sampling", "tensor_parallel", "seed"),
               options={"gpu_memory_utilization": _FRACTION,
                        "max_model_len": (int, lambda v: 1 <= v <= 1 << 20, "a token count, 1 to 1048576"),
                        "dtype": (str, lambda v: v in ("auto", "bfloat16", "float16", "float32", "half", "float"),
                                  "auto, bfloat16, float16 or float32"),
                        "seeded": _BOOL},
               build=lambda cfg, opts: _module(ENGINES["vllm"].cls)(
                   cfg.model, cfg.sampling, tensor_parallel=cfg.gpus_per_pod, seed=cfg.seed, **opts)),
    EngineSpec("hf", "laclip.rewrite.engines.hf:HFEngine", extra="rewrite", llm=True, gpu=True, model_dirs=True,
               needs={"model": "--model (a checkpoint folder or model id)"}, passed=("model", "sampling", "loaded"),
               options={"device": _DEVICE,
                        "dtype": (str, lambda v: v in ("float32", "float16", "bfloat16"),
                                  "float32, float16 or bfloat16"),
                        "fixed_length": _BOOL},
               build=lambda cfg, opts: _module(ENGINES["hf"].cls)(cfg.model, cfg.sampling, **opts)),
    EngineSpec("eda", "laclip.rewrite.engines.eda:EdaEngine", extra="rewrite", passed=("synonyms",),
               options={"alpha": _FRACTION, "wordnet": _BOOL,
                        "operations": (str, _is_operations, f"a comma-separated subset of {', '.join(OPERATIONS)}")},
               identity=lambda cfg: {"eda_operations": list(cfg.eda_operations())}, build=_eda),
    EngineSpec("backtranslate", "laclip.rewrite.engines.backtranslate:BackTranslateEngine", extra="rewrite",
               llm=True, model_dirs=True, passed=("model", "back_model", "sampling", "seed"),
               needs={"model": "--model (source -> pivot)", "back_model": "--back-model (pivot -> source)"},
               # device reaches each leg's engine (the constructor's **opts)
               options={"backend": (str, lambda v: v in ("hf", "vllm"), "hf or vllm"), "language": _LANGUAGE,
                        "pivot": _LANGUAGE, "device": _DEVICE},
               build=lambda cfg, opts: _module(ENGINES["backtranslate"].cls)(
                   cfg.model, cfg.back_model, cfg.sampling, seed=cfg.seed, **opts)),
    EngineSpec("openai", "laclip.rewrite.engines.openai:OpenAIEngine", extra="rewrite", llm=True,
               needs={"endpoint": "--endpoint URL", "model": "--model NAME"}, passed=("endpoint", "model", "sampling"),
               secret_env={"OPENAI_API_KEY": ("laclip-openai", "api-key")},
               options={"timeout_s": (float, lambda v: 0 < v <= 86400, "seconds, above 0 and at most 86400"),
                        "retries": (int, lambda v: 0 <= v <= 100, "a count, 0 to 100")},
               build=lambda cfg, opts: _module(ENGINES["openai"].cls)(cfg.endpoint, cfg.model, cfg.sampling, **opts)),
    EngineSpec("null", "laclip.rewrite.engines.base:NullEngine",
               options={"delay_s": (float, lambda v: 0 <= v <= 3600, "seconds, 0 to 3600")},
               build=lambda cfg, opts: NullEngine(**opts)),
)}


def spec(name: str) -> EngineSpec:
    if name not in ENGINES:
        raise UsageError(f"unknown engine {name!r}: choose {', '.join(ENGINES)}")
    return ENGINES[name]


def make_engine(cfg) -> Engine:
    """The engine a RewriteConfig asks for, loaded and ready."""
    engine = spec(cfg.engine)
    try:
        return engine.build(cfg, dict(cfg.engine_options))
    except ModuleNotFoundError as exc:  # a library of its extra is not installed here
        if not engine.extra or (exc.name or "").split(".")[0] in ("laclip", ""):
            raise
        raise UsageError(f"the {cfg.engine} engine needs {exc.name}, which this install lacks: pip install "
                         f"'laclip[{engine.extra}]'") from None
    except TypeError as exc:
        if "keyword argument" in str(exc):
            raise UsageError(f"engine option not understood by the {cfg.engine} engine: {exc}") from None
        raise

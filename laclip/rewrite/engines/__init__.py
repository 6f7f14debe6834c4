"""Engines by name; each module is imported only when its engine is used (vllm is not
installed outside the rewrite image, torch not in the CLI install)."""

from __future__ import annotations

from laclip.errors import UsageError
from laclip.rewrite.engines.base import Engine, EngineError, NullEngine, Request

__all__ = ["Engine", "EngineError", "Request", "make_engine"]


def make_engine(cfg) -> Engine:
    """The engine a RewriteConfig asks for, loaded and ready."""
    try:
        return _make(cfg, dict(cfg.engine_options))
    except TypeError as exc:
        if "keyword argument" in str(exc):
            raise UsageError(f"engine option not understood by the {cfg.engine} engine: {exc}") from None
        raise


def _make(cfg, opts: dict) -> Engine:
    if cfg.engine == "null":
        return NullEngine(**opts)
    if cfg.engine == "eda":
        from laclip.rewrite.engines.eda import EdaEngine

        # the operations the rewrite id names, every one of them, or a permanent error
        return EdaEngine(**{**opts, "operations": ",".join(cfg.eda_operations())})
    if cfg.engine == "hf":
        from laclip.rewrite.engines.hf import HFEngine

        return HFEngine(cfg.model, cfg.sampling, **opts)
    if cfg.engine == "backtranslate":
        from laclip.rewrite.engines.backtranslate import BackTranslateEngine

        return BackTranslateEngine(cfg.model, cfg.back_model, cfg.sampling, seed=cfg.seed, **opts)
    if cfg.engine == "vllm":
        from laclip.rewrite.engines.vllm import VLLMEngine

        return VLLMEngine(cfg.model, cfg.sampling, tensor_parallel=cfg.gpus_per_pod, seed=cfg.seed, **opts)
    if cfg.engine == "openai":
        from laclip.rewrite.engines.openai import OpenAIEngine

        return OpenAIEngine(cfg.endpoint, cfg.model, cfg.sampling, **opts)
    raise UsageError(f"unknown engine {cfg.engine!r}: choose vllm, hf, eda, backtranslate, openai or null")

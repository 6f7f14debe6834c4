"""The engine interface: a batch of requests in, one continuation string per request out.

LLM engines (vllm, hf, openai) complete `Request.prompt`; `eda` transforms
`Request.caption` directly; `null` is an identity-like engine for benchmarks and tests.
An engine that raises, or returns the wrong number of outputs, fails the whole shard:
nothing is written, and the next attempt of the pod redoes it.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import NamedTuple

from laclip.errors import DataError, LaclipError, UsageError


class EngineError(LaclipError):
    """The engine failed or returned something unusable (retriable: the shard is redone)."""


class Request(NamedTuple):
    prompt: str  # instruction + 3 pairs + caption + " =>"
    caption: str  # the cleaned caption alone (what eda works on)
    seed: int  # 64-bit, fixed by (dataset, shard, key, source, seed)


class Engine(ABC):
    name: str = "?"
    default_batch: int = 64

    @abstractmethod
    def generate(self, requests: list[Request]) -> list[str]:
        """One continuation per request, in order (text after ` =>`, up to or past a newline)."""

    def info(self) -> dict:
        """What the stats record about the engine (model, versions, options)."""
        return {"engine": self.name}

    def close(self) -> None:
        pass

    def __call__(self, requests: list[Request]) -> list[str]:
        outs = self.generate(requests)
        if not isinstance(outs, list) or len(outs) != len(requests):
            got = len(outs) if isinstance(outs, list) else type(outs).__name__
            raise EngineError(f"engine {self.name!r} returned {got} outputs for {len(requests)} prompts")
        for i, o in enumerate(outs):
            if o is None:
                outs[i] = ""
            elif not isinstance(o, str):
                raise EngineError(f"engine {self.name!r} returned a {type(o).__name__} instead of text")
        return outs


class NullEngine(Engine):
    """A trivial rewrite, so benchmarks measure everything but the model. `delay_s` sleeps per
    batch (tests use it to kill a worker mid-shard)."""

    name = "null"
    default_batch = 4096

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = float(delay_s)

    def generate(self, requests: list[Request]) -> list[str]:
        if self.delay_s:
            time.sleep(self.delay_s)
        return [" a photo of " + r.caption + "\nnext line" for r in requests]

    def info(self) -> dict:
        return {"engine": self.name, "delay_s": self.delay_s}


def check_model_dir(model: str, engine: str) -> Path:
    """A local checkpoint folder, or a clear error naming the path."""
    path = Path(model).expanduser()
    if not path.exists():
        raise UsageError(f"model path {model!r} for the {engine} engine does not exist")
    if not path.is_dir() or not (path / "config.json").is_file():
        raise UsageError(f"model path {model!r} is not a checkpoint folder (no config.json in it)")
    return path


def load_error(exc: BaseException, model: str, what: str = "checkpoint") -> LaclipError:
    """What loading a model folder raised, as one line. A folder that does not load (truncated or foreign
    weights, a config transformers cannot read) is permanent: the next attempt reads the same files, so the
    Job must not retry it. Running out of memory is not (another node may have more)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return EngineError(f"out of memory loading the {what} in {model}: {text[:300]}")
    return DataError(f"cannot load the {what} in {model} ({type(exc).__name__}: {text[:300]}): check the folder's "
                     "weights and config (a copy cut short, files of another model)")

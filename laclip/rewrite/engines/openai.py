"""Any OpenAI-compatible completions endpoint: a `vllm serve` deployment or a hosted API.

Uses the legacy completions route (`/v1/completions`), which takes a batch of raw prompts
and a stop string; the key comes from $OPENAI_API_KEY (a local vLLM server accepts any).
Useful to rewrite from a shared server; `python -m laclip.rewrite.draft_pairs` uses the same
kind of endpoint (chat route) to draft new meta pairs with a chatbot, as the paper did.
"""

from __future__ import annotations

import os

from laclip.rewrite.config import Sampling
from laclip.rewrite.engines.base import Engine, EngineError, Request


class OpenAIEngine(Engine):
    name = "openai"
    default_batch = 32

    def __init__(self, endpoint: str, model: str, sampling: Sampling, timeout_s: float = 120.0, retries: int = 3):
        from openai import OpenAI

        self.endpoint = endpoint
        self.model = model
        self.sampling = sampling
        self.client = OpenAI(base_url=endpoint, api_key=os.environ.get("OPENAI_API_KEY", "unused"),
                             timeout=timeout_s, max_retries=int(retries))

    def info(self) -> dict:
        return {"engine": self.name, "endpoint": self.endpoint, "model": self.model}

    def generate(self, requests: list[Request]) -> list[str]:
        import openai

        s = self.sampling
        try:
            resp = self.client.completions.create(
                model=self.model, prompt=[r.prompt for r in requests], temperature=s.temperature, top_p=s.top_p,
                max_tokens=s.max_new_tokens, stop=[s.stop] if s.stop else None, seed=requests[0].seed % (2**31),
            )
        except openai.OpenAIError as exc:
            raise EngineError(f"completion request to {self.endpoint} failed: {exc}") from None
        if len(resp.choices) != len(requests):
            raise EngineError(f"{self.endpoint} answered {len(resp.choices)} completions for {len(requests)} prompts")
        texts = [""] * len(requests)
        for choice in resp.choices:
            if not 0 <= choice.index < len(requests):
                raise EngineError(f"{self.endpoint} answered choice index {choice.index} for {len(requests)} prompts")
            texts[choice.index] = choice.text or ""
        return texts

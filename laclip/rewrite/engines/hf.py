"""Hugging Face transformers engine: any local causal-LM checkpoint folder, batched sampling.

Prompts are left-padded and, when longer than the context allows, cut from the left (the
caption and ` =>` at the end are what must survive). Generation stops per row at the first
newline token. On a GPU the model runs in bf16, on CPU in float32.
"""

from __future__ import annotations

from laclip.rewrite.config import Sampling
from laclip.rewrite.engines.base import Engine, Request, check_model_dir, load_error


class HFEngine(Engine):
    name = "hf"
    default_batch = 32

    def __init__(self, model: str, sampling: Sampling, device: str | None = None, dtype: str | None = None,
                 fixed_length: bool = False, loaded: tuple | None = None):
        """`loaded`: (model, tokenizer) already in memory (bench/gpu.py builds a LLaMA-7B-shaped random
        model on the GPU instead of writing 13 GB to disk and reading them back); `model` then only names it."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.sampling = sampling
        self.fixed_length = bool(fixed_length)  # benchmarks: always max_new_tokens, no stop
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dt = dtype or ("bfloat16" if self.device.startswith("cuda") else "float32")
        if loaded is not None:
            self.model_path, (self.model, self.tokenizer) = str(model), loaded
        else:
            path = check_model_dir(model, self.name)
            self.model_path = str(path)
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(path)
                self.model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dt))
            except Exception as exc:  # noqa: BLE001 - safetensors, torch and tokenizers raise their own kinds
                raise load_error(exc, model) from None
        self.model.to(self.device).eval()
        tok = self.tokenizer
        tok.padding_side = "left"
        tok.truncation_side = "left"
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.convert_ids_to_tokens(0)
        limit = min(getattr(self.model.config, "max_position_embeddings", 2048) or 2048,
                    tok.model_max_length if tok.model_max_length < 1e9 else 10**9)
        self.max_prompt_tokens = max(16, limit - sampling.max_new_tokens)
        vocab = len(tok)
        pieces = tok.batch_decode([[i] for i in range(vocab)])
        self.newline_ids = torch.tensor([i for i, p in enumerate(pieces) if sampling.stop and sampling.stop in p],
                                        dtype=torch.long, device=self.device)
        self._torch = torch

    def info(self) -> dict:
        cfg = self.model.config
        return {"engine": self.name, "model": self.model_path, "device": self.device,
                "dtype": str(self.model.dtype).replace("torch.", ""), "architecture": cfg.model_type,
                "parameters": sum(p.numel() for p in self.model.parameters()), "fixed_length": self.fixed_length}

    def generate(self, requests: list[Request]) -> list[str]:
        torch = self._torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        newline_ids = self.newline_ids

        class StopAtNewline(StoppingCriteria):
            done = None

            def __call__(self, input_ids, scores, **kwargs):
                hit = torch.isin(input_ids[:, -1], newline_ids)
                self.done = hit if self.done is None else (self.done | hit)
                return self.done

        enc = self.tokenizer([r.prompt for r in requests], return_tensors="pt", padding=True, truncation=True,
                             max_length=self.max_prompt_tokens).to(self.device)
        s = self.sampling
        kwargs = dict(max_new_tokens=s.max_new_tokens, pad_token_id=self.tokenizer.pad_token_id)
        if s.temperature > 0:
            kwargs.update(do_sample=True, temperature=s.temperature, top_p=s.top_p)
        else:
            kwargs.update(do_sample=False)
        if self.fixed_length:
            kwargs.update(min_new_tokens=s.max_new_tokens, eos_token_id=None)
        elif len(newline_ids):
            kwargs["stopping_criteria"] = StoppingCriteriaList([StopAtNewline()])
        torch.manual_seed(requests[0].seed % (2**63))  # same batch, same seed: a retry samples the same
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        return self.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)

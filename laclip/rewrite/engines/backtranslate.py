"""Back-translation, the paper's other non-LLM baseline: each caption goes to a pivot language and
back, through two translation models in local folders (`--model` source -> pivot, `--back-model`
pivot -> source).

Each leg is served by the `hf` or `vllm` engine (`--engine-option backend=hf|vllm`):

- hf, an encoder-decoder checkpoint (MarianMT-shaped, `config.is_encoder_decoder`): the
  caption is the encoder input, the translation is generated (sampled with the run's
  temperature and top-p, so the 4 sources get 4 different round trips; temperature 0 is
  greedy), at most max_new_tokens;
- hf or vllm, a causal LM: the leg is a prompt, "Translate from English to German." then
  "English: <text>" and "German:", completed up to the newline by the HFEngine / VLLMEngine
  (vLLM serves causal LMs only; Marian checkpoints need backend=hf).

The round trip's output goes through the same filters as every engine's (empty, echo, too
short, runaway repetition...): a rejected one keeps the original caption and is counted.
"""

from __future__ import annotations

from laclip.errors import UsageError
from laclip.rewrite.config import Sampling
from laclip.rewrite.engines.base import Engine, EngineError, Request, check_model_dir, load_error

BACKENDS = ("hf", "vllm")


class Seq2SeqLeg:
    """One translation direction with a transformers encoder-decoder checkpoint."""

    def __init__(self, model: str, sampling: Sampling, device: str | None = None):
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        path = check_model_dir(model, "backtranslate")
        self.path, self.sampling, self._torch = str(path), sampling, torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForSeq2SeqLM.from_pretrained(path).to(self.device).eval()
        except Exception as exc:  # noqa: BLE001 - safetensors, torch and tokenizers raise their own kinds
            raise load_error(exc, model, "translation model") from None
        limit = getattr(self.model.config, "max_position_embeddings", 512) or 512
        self.max_source = max(8, min(limit, 512))

    def info(self) -> dict:
        return {"model": self.path, "kind": "seq2seq", "architecture": self.model.config.model_type,
                "parameters": sum(p.numel() for p in self.model.parameters())}

    def translate(self, texts: list[str], seed: int) -> list[str]:
        torch, s = self._torch, self.sampling
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                             max_length=self.max_source).to(self.device)
        enc.pop("token_type_ids", None)
        kwargs = dict(max_new_tokens=s.max_new_tokens, num_beams=1)
        kwargs.update(do_sample=True, temperature=s.temperature, top_p=s.top_p) if s.temperature > 0 else \
            kwargs.update(do_sample=False)
        torch.manual_seed(seed % (2**63))  # same batch, same seed: a retry translates the same
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]


class PromptLeg:
    """One translation direction with a causal LM, served by the hf or vllm engine."""

    def __init__(self, model: str, sampling: Sampling, backend: str, source: str, target: str, **opts):
        self.source, self.target = source, target
        if backend == "vllm":
            from laclip.rewrite.engines.vllm import VLLMEngine

            self.engine: Engine = VLLMEngine(model, sampling, **opts)
        else:
            from laclip.rewrite.engines.hf import HFEngine

            self.engine = HFEngine(model, sampling, **opts)

    def info(self) -> dict:
        return {**self.engine.info(), "kind": "prompt", "from": self.source, "to": self.target}

    def prompt(self, text: str) -> str:
        return f"Translate from {self.source} to {self.target}.\n{self.source}: {text}\n{self.target}:"

    def translate(self, texts: list[str], seed: int) -> list[str]:
        outs = self.engine([Request(self.prompt(t), t, seed) for t in texts])
        return [o.split("\n", 1)[0].strip() for o in outs]


def _is_encoder_decoder(model: str) -> bool:
    import json

    path = check_model_dir(model, "backtranslate")
    try:
        return bool(json.loads((path / "config.json").read_text()).get("is_encoder_decoder"))
    except ValueError as exc:
        raise UsageError(f"{path / 'config.json'} is not JSON: {exc}") from None


def make_leg(model: str, sampling: Sampling, backend: str, source: str, target: str, **opts):
    if _is_encoder_decoder(model):
        if backend == "vllm":
            raise UsageError(f"{model} is an encoder-decoder (MarianMT-like) checkpoint, which vLLM does not serve: "
                             "use --engine-option backend=hf")
        return Seq2SeqLeg(model, sampling, device=opts.get("device"))
    return PromptLeg(model, sampling, backend, source, target, **opts)


class BackTranslateEngine(Engine):
    name = "backtranslate"
    default_batch = 32

    def __init__(self, model: str, back_model: str | None, sampling: Sampling, backend: str = "hf",
                 language: str = "English", pivot: str = "German", seed: int = 0, **opts):
        if not back_model:
            raise UsageError("the backtranslate engine needs --back-model (the pivot -> source translation folder)")
        if backend not in BACKENDS:
            raise UsageError(f"backtranslate: backend {backend!r}: choose hf or vllm")
        if backend == "vllm":
            opts.setdefault("seed", seed)
        self.backend, self.language, self.pivot = backend, language, pivot
        self.forward = make_leg(model, sampling, backend, language, pivot, **opts)
        self.backward = make_leg(back_model, sampling, backend, pivot, language, **opts)

    def info(self) -> dict:
        return {"engine": self.name, "backend": self.backend, "language": self.language, "pivot": self.pivot,
                "forward": self.forward.info(), "backward": self.backward.info()}

    def generate(self, requests: list[Request]) -> list[str]:
        seed = requests[0].seed
        middle = self.forward.translate([r.caption for r in requests], seed)
        if len(middle) != len(requests):
            raise EngineError(f"backtranslate: {len(middle)} translations for {len(requests)} captions")
        return self.backward.translate(middle, seed ^ 0x5DEECE66D)

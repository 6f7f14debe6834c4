"""vLLM engine: the production path on A100s (installed only in the rewrite image, `[vllm]` extra).

`LLM(..., enable_prefix_caching=True)`: the instruction and the leading example pairs are
shared by many prompts of a shard, and vLLM reuses their KV blocks (whole 16-token blocks).
The worker hands a whole shard's prompts over at once, sorted by (source, pairs), so that
prompts with identical prefixes are scheduled together while their blocks are cached; vLLM
batches and schedules internally (continuous batching), so no outer batching is needed.
Each request gets its own sampling seed, so a retried pod samples the same rewrites
(`--engine-option seeded=false` drops that, should per-request generators cost throughput).
"""

from __future__ import annotations

from laclip.errors import UsageError
from laclip.rewrite.config import Sampling
from laclip.rewrite.engines.base import Engine, Request


class VLLMEngine(Engine):
    name = "vllm"
    default_batch = 1_000_000  # a whole shard per call

    def __init__(self, model: str, sampling: Sampling, tensor_parallel: int = 1, seed: int = 0,
                 gpu_memory_utilization: float = 0.9, max_model_len: int = 2048, dtype: str = "bfloat16",
                 seeded: bool = True):
        try:
            import vllm
        except ImportError:
            raise UsageError(
                "the vllm engine needs vLLM, which is installed only in the rewrite image "
                "(pip install 'laclip[vllm]' on a CUDA machine); use --engine hf or eda here"
            ) from None
        if model.startswith(("/", "./", "~")):
            from laclip.rewrite.engines.base import check_model_dir

            model = str(check_model_dir(model, self.name))  # vLLM does not expand `~`: it would take a hub id
        self._vllm = vllm
        self.model_path = model
        self.sampling = sampling
        self.llm = vllm.LLM(model=model, tensor_parallel_size=tensor_parallel, enable_prefix_caching=True,
                            gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                            dtype=dtype, seed=seed)
        self.tensor_parallel = tensor_parallel
        self.seeded = bool(seeded)  # per-request seeds make retries identical; `seeded=false` trades that for speed

    def info(self) -> dict:
        return {"engine": self.name, "model": self.model_path, "vllm": self._vllm.__version__,
                "tensor_parallel": self.tensor_parallel, "prefix_caching": True, "seeded": self.seeded}

    def generate(self, requests: list[Request]) -> list[str]:
        s = self.sampling
        params = [
            self._vllm.SamplingParams(temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_new_tokens,
                                      stop=[s.stop] if s.stop else None,
                                      seed=r.seed % (2**31) if self.seeded else None)
            for r in requests
        ]
        outs = self.llm.generate([r.prompt for r in requests], params, use_tqdm=False)
        return [o.outputs[0].text if o.outputs else "" for o in outs]

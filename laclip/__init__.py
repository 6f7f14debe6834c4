"""laclip: CLIP training with LLM-rewritten captions, as Kubernetes batch jobs.

This package runs inside the containers. Importing it is cheap: torch, open_clip,
transformers and vllm are imported only by the stage modules that need them.
"""

__version__ = "0.1.0"

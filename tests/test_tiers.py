"""The tier check (tests/tiers.py) can fail: an unmarked test that starts Python, forks, trains or runs a
container engine fails, in a pytest session of its own; the same test marked passes; a cheap program
is no reason to mark."""

from __future__ import annotations

import os
import sys

import pytest

from tests.tiers import classify

CONFTEST = """
import pytest
from tests.tiers import TierWatch

def pytest_configure(config):
    config.pluginmanager.register(TierWatch(), "laclip-test-tiers")
    config.addinivalue_line("markers", "slow: heavy")
    config.addinivalue_line("markers", "images: engines")
"""

INNER = f"""
import os
import subprocess

import pytest

PY = {sys.executable!r}


@pytest.fixture(scope="session")
def forked_once():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def test_python_child():
    subprocess.run([PY, "-c", "pass"], check=True)


@pytest.mark.slow
def test_python_child_marked():
    subprocess.run([PY, "-c", "pass"], check=True)


def test_python_in_a_shell_script():
    subprocess.run(["sh", "-c", f"true && exec {{PY}} -c pass"], check=True)


def test_trains():
    import torch

    model = torch.nn.Linear(200, 60)  # 12,060 parameters
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.ones(1, 200)).sum().backward()
    opt.step()


def test_steps_an_optimizer_of_a_few_parameters():
    import torch

    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([p], lr=0.1)
    p.sum().backward()
    opt.step()


@pytest.mark.slow
def test_a_slow_one_makes_the_shared_fixture(forked_once):
    pass


def test_a_fast_one_uses_it_later(forked_once):
    pass


def test_a_cheap_program():
    subprocess.run(["true"], check=True)


def test_an_engine(tmp_path):
    (tmp_path / "podman").write_text("#!/bin/sh\\nexit 0\\n")
    (tmp_path / "podman").chmod(0o755)
    subprocess.run([str(tmp_path / "podman"), "info"], check=True)
"""


def test_unmarked_heavy_tests_fail_and_marked_ones_pass(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    outcomes = {r.nodeid.split("::")[-1]: r.outcome for r in result.reprec.getreports("pytest_runtest_logreport")
                if r.when == "call"}
    assert outcomes == {
        "test_python_child": "failed", "test_python_child_marked": "passed", "test_python_in_a_shell_script": "failed",
        "test_trains": "failed", "test_a_slow_one_makes_the_shared_fixture": "passed",
        "test_a_fast_one_uses_it_later": "failed", "test_a_cheap_program": "passed", "test_an_engine": "failed",
        "test_steps_an_optimizer_of_a_few_parameters": "passed",
    }, result.stdout.str()
    text = result.stdout.str()
    assert "is not marked slow, yet it started" in text and "took an optimizer step (SGD, 12,060 parameters)" in text
    assert "forked this process" in text and "is not marked images, yet it started" in text
    assert "tests/tiers.py: a test that starts a Python process" in text


@pytest.mark.parametrize("argv, kind", [
    ([sys.executable, "-m", "laclip.eval.main"], "python"),
    (["python3", "-c", "pass"], "python"),
    ([str(__import__("pathlib").Path(sys.executable).with_name("laclip")), "pipeline", "--local"], "python"),
    (["unshare", "--user", "sh", "-c", f"mount -t tmpfs x /y && cd / && exec {sys.executable} -m tests.x"], "python"),
    ("laclip --help", "python"),  # a shell=True string, found on the PATH below
    (["podman", "build", "."], "engine"),
    (["bash", "-c", "echo hi | tr a-z A-Z"], None),
    (["true"], None),
    (["bash", "-c", "python() { echo stub; }; python -m x"], None),  # nothing called python on the child's PATH
])
def test_what_counts_as_a_python_process(argv, kind, tmp_path):
    (tmp_path / "podman").write_text("#!/bin/sh\n")
    (tmp_path / "podman").chmod(0o755)
    bins = os.pathsep.join([str(tmp_path), os.path.dirname(sys.executable), "/usr/bin", "/bin"])
    path = "/nonexistent:/bin:/usr/bin" if "stub" in str(argv) else bins
    found = classify(argv, env={"PATH": path})
    assert (found[0] if found else None) == kind, found

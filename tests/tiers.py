"""Keeps the test tiers honest: a test that is not marked `slow` may not start a Python process, fork,
or train a model; one that starts a container engine must be marked `images`.

`make test-fast` is `pytest -m "not slow and not images"`: the unit tier of the edit loop. Whether a
test belongs there is not left to memory: while each test runs (its setup, call and teardown, and the
setup of every fixture it uses, wherever that fixture was first made), this plugin watches

- process starts, through Python's audit events (subprocess.Popen, os.system, os.posix_spawn,
  os.exec*, os.spawn*, os.fork; multiprocessing and DataLoader workers fork too). A start counts
  when it runs Python: an argv word (or a word of a `sh -c` script), found on the child's PATH, that
  is a python interpreter or a script with a python #! line (the `laclip` command, torchrun,
  open_clip_train, checkov, ...); other programs (fake-gcs-server, hadolint, bash with no python in
  it) are cheap and allowed;
- optimizer steps (torch.optim's global step hook) on more than MODEL_SIZE parameters: training.

A test that does any of these without the marker fails, naming what it did and the rule. The
events of a nested pytest session (pytester) are that session's own.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field

import pytest

HEAVY = ("slow", "images")  # either keeps a test out of the unit tier
ENGINES = {"podman", "docker", "buildah", "nerdctl"}
MODEL_SIZE = 10_000  # parameters: a step on fewer is a unit test of the optimizer, not training
RULES = ("tests/tiers.py: a test that starts a Python process (the laclip command, python -m ..., torchrun, a "
         "peer tool), forks, or trains a model (an optimizer step on over 10,000 parameters) is marked "
         "@pytest.mark.slow; one that starts a container engine is marked @pytest.mark.images")


@dataclass(eq=False)  # recorders are removed by identity
class Record:
    """What ran while one recorder was open: one line per heavy thing, and the container engines."""

    heavy: list[str] = field(default_factory=list)
    engines: list[str] = field(default_factory=list)

    def merge(self, other: Record) -> None:
        self.heavy += [h for h in other.heavy if h not in self.heavy]
        self.engines += [e for e in other.engines if e not in self.engines]


# Open recorders, innermost last; None is a barrier (a nested pytest session starts): events go to the
# recorders above the newest barrier only.
_open: list[Record | None] = []


def _deliver(kind: str, what: str) -> None:
    for rec in reversed(_open):
        if rec is None:
            return
        target = rec.engines if kind == "engine" else rec.heavy
        if what not in target and len(target) < 20:
            target.append(what)


def _python_script(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            first = f.readline(200)
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first


def _words(argv) -> list[str]:
    """The argv, plus the words of any shell script in it (`sh -c "... exec python -m x"`)."""
    if isinstance(argv, (str, bytes, os.PathLike)):
        argv = [argv]
    out = []
    for arg in argv or []:
        arg = os.fsdecode(arg)
        out.append(arg)
        if any(c in arg for c in " \n;&|") and len(arg) < 100_000:
            try:
                out += shlex.split(arg, comments=True)
            except ValueError:
                out += arg.split()
    return out


def classify(argv, executable=None, env=None) -> tuple[str, str] | None:
    """('python' | 'engine', summary) for a process start that runs Python or a container engine; None
    for another program. Bare names are found on the child's PATH, as its shell would find them."""
    words = _words(argv)
    summary = " ".join(words[:6])[:160]
    path_var = (env if env is not None else os.environ).get("PATH", os.defpath)
    if isinstance(path_var, bytes):
        path_var = os.fsdecode(path_var)
    for word in ([os.fsdecode(executable)] if executable else []) + words:
        if not word or len(word) > 300 or word.startswith("-"):
            continue
        path = word if "/" in word else shutil.which(word, path=path_var)
        if not path:
            continue
        base = os.path.basename(path)
        if base in ENGINES:
            return "engine", summary
        if path == sys.executable or re.fullmatch(r"python[0-9.]*", base) or _python_script(path):
            return "python", summary
    return None


# event -> (argv, executable, env) from its arguments
_AUDIT = {"subprocess.Popen": lambda a: (a[1], a[0], a[3]), "os.posix_spawn": lambda a: (a[1], a[0], a[2]),
          "os.exec": lambda a: (a[1], a[0], a[2]), "os.spawn": lambda a: (a[2], a[1], a[3]),
          "os.system": lambda a: (a[0], None, None)}


def _audit(event: str, args) -> None:
    try:
        if event == "import" and not _hooked["optim"]:
            _hook_optim()
        if not _open or _open[-1] is None:
            return
        if event in ("os.fork", "os.forkpty"):
            _deliver("heavy", "forked this process (multiprocessing, DataLoader workers)")
        elif event in _AUDIT:
            found = classify(*_AUDIT[event](args))
            if found:
                kind, summary = found
                _deliver("engine" if kind == "engine" else "heavy", f"started `{summary}`")
    except Exception:  # noqa: BLE001 - an audit hook that raises would break the audited call
        pass


def _optimizer_step(optimizer, args, kwargs) -> None:
    if _open and _open[-1] is not None:
        size = sum(p.numel() for group in optimizer.param_groups for p in group["params"])
        if size > MODEL_SIZE:
            _deliver("heavy", f"took an optimizer step ({type(optimizer).__name__}, {size:,} parameters): trains a "
                              "model")


_hooked = {"audit": False, "optim": False}


def _hook_optim() -> None:
    optim = sys.modules.get("torch.optim.optimizer")
    if optim is not None and hasattr(optim, "register_optimizer_step_pre_hook"):
        optim.register_optimizer_step_pre_hook(_optimizer_step)
        _hooked["optim"] = True


def install() -> None:
    """The audit hook (once per process: audit hooks cannot be removed), which also adds torch's step
    hook as soon as torch.optim is imported, now or later (an import is an audit event)."""
    if not _hooked["audit"]:
        sys.addaudithook(_audit)
        _hooked["audit"] = True
    if not _hooked["optim"]:
        _hook_optim()


class TierWatch:
    """The pytest plugin: one per pytest session (tests/conftest.py registers it)."""

    def __init__(self):
        install()
        self.fixture_costs: dict[int, Record] = {}  # id(fixturedef) -> what its last setup did
        self.running: Record | None = None  # the current test's, from its setup to its teardown
        self.judged = False  # a failure of the current test was reported (once is enough)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session):
        _open.append(None)  # a nested session's events are its own

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session):
        while _open and _open.pop() is not None:
            pass

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef, request):
        rec = Record()
        _open.append(rec)
        try:
            return (yield)
        finally:
            _open.remove(rec)
            self.fixture_costs[id(fixturedef)] = rec

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        self.running, self.judged = Record(), False
        _open.append(self.running)
        try:
            return (yield)
        finally:
            _open.remove(self.running)
            self.running = None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        # judged after the call (all that it and its fixtures did) and after teardown (what ran since)
        if call.when == "setup" or report.skipped or self.running is None or self.judged:
            return report
        found = Record()
        found.merge(self.running)
        for fixturedef in _closure(item):  # a fixture made earlier, for another test, costs this one too
            found.merge(self.fixture_costs.get(id(fixturedef), Record()))
        problems = []
        if found.heavy and not any(item.get_closest_marker(m) for m in HEAVY):
            problems.append("is not marked slow, yet it " + "; ".join(found.heavy))
        if found.engines and not item.get_closest_marker("images"):
            problems.append("is not marked images, yet it " + "; ".join(found.engines))
        if problems:
            self.judged = True
            text = f"{item.nodeid} " + "\n".join(problems) + f"\n({RULES})"
            if report.passed:
                report.outcome, report.longrepr = "failed", text
            else:
                report.sections.append(("test tiers", text))
        return report


def _closure(item) -> list:
    """The fixture definitions this test uses (with those they use), the ones in effect for it."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    return [info.name2fixturedefs[name][-1] for name in info.names_closure if info.name2fixturedefs.get(name)]

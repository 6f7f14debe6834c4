"""The README's quick start as a new user meets it: `laclip pipeline --local` (what `make demo` runs)
on a machine without WordNet, with an empty home and no caches.

CI installs WordNet for the eda engine's four operations, so the path a new user takes first is the
one CI would never take. Here WordNet is hidden from every place laclip looks (nltk's data path as
the child interpreter computes it, and laclip's own database folders) by mounting an empty folder
over each one that exists, in a private mount namespace of the child alone: the product runs
unchanged and genuinely finds nothing. The environment is built from nothing: HOME is an empty
folder (so the store, ~/nltk_data and every default cache start empty) and no LACLIP_*, NLTK_DATA,
HF_*, TORCH_* or XDG_* variable of this machine reaches the child.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.test_contract import MARKUP

LACLIP = str(Path(sys.executable).with_name("laclip"))
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # a login shell's, not this one's
# Mount an empty read-only folder over each place, then run the command: `sh -c HIDE sh EMPTY P1 P2 -- CMD...`
HIDE = ('empty=$1; shift; while [ "$1" != -- ]; do mount --bind "$empty" "$1" && mount -o remount,bind,ro "$1" '
        '|| exit 97; shift; done; shift; exec "$@"')


def fresh_env(home: Path, tmp: Path) -> dict[str, str]:
    # COLUMNS: a terminal's width (rich wraps a pipe's output at 80 columns)
    return {"HOME": str(home), "PATH": PATH, "LANG": "C.UTF-8", "TMPDIR": str(tmp), "COLUMNS": "160"}


def wordnet_places(env: dict[str, str]) -> list[str]:
    """Where the child would find WordNet: nltk's data path under the child's environment (it includes
    ~/nltk_data and the interpreter's prefix) and laclip's WordNet database folders."""
    code = ("import json, nltk.data; from laclip.rewrite import wordnet; "
            "print(json.dumps(nltk.data.path + list(wordnet.SYSTEM_FOLDERS)))")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def hidden(cmd: list[str], places: list[str], empty: Path) -> list[str]:
    """`cmd` in a private mount namespace with an empty folder over every existing place: as root (CI)
    directly, else as root of a user namespace of its own."""
    there = [p for p in places if os.path.isdir(p)]
    if not there:
        return cmd
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip(f"{', '.join(there)} hold(s) WordNet data to hide, and util-linux's unshare is missing")
    errors = []
    for userns in ([] if os.geteuid() else [[]]) + [["--map-root-user"]]:  # root: a mount namespace alone
        ns = [unshare, "--mount", "--propagation", "private", *userns, "sh", "-c", HIDE, "sh", str(empty), *there, "--"]
        probe = subprocess.run([*ns, "true"], capture_output=True, text=True, timeout=60)
        if probe.returncode == 0:
            return [*ns, *cmd]
        errors.append(probe.stderr.strip())
    if os.geteuid() != 0:  # no user namespaces for unprivileged users here
        pytest.skip(f"cannot hide {', '.join(there)}: {'; '.join(errors)}")
    pytest.fail(f"cannot hide {', '.join(there)} as root: {'; '.join(errors)}")


def test_hiding_leaves_the_child_an_empty_folder(tmp_path):
    """The mechanism the lane rests on: a folder with data reads as empty in the child, and only there."""
    place, empty = tmp_path / "wordnet", tmp_path / "empty"
    place.mkdir()
    empty.mkdir()
    (place / "data.noun").write_text("x")
    proc = subprocess.run(hidden(["ls", "-A", str(place)], [str(place), str(tmp_path / "absent")], empty),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == "", proc
    assert (place / "data.noun").read_text() == "x"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quick_start_on_a_fresh_machine_without_wordnet(tmp_path):
    home, empty = tmp_path / "home", tmp_path / "empty"
    for folder in (home, empty):
        folder.mkdir()
    # an empty temporary folder as short as a new user's /tmp: under pytest-xdist tmp_path is too long for
    # the data loader's socket (laclip.procs.check_worker_tmpdir refuses it)
    tmp = Path(tempfile.mkdtemp(prefix="fresh-", dir="/tmp"))
    env = fresh_env(home, tmp)
    places = wordnet_places(env)
    assert str(home / "nltk_data") in places and "/usr/share/wordnet" in places

    # the demo's own command with a reduced step budget; the store is the default one, in the empty home
    cmd = hidden([LACLIP, "pipeline", "--local", "--steps", "6"], places, empty)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=840, cwd=home)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "Traceback" not in out, out[-6000:]
    for needle in ("CLIP vs LaCLIP", "zero-shot top-1", "linear probe top-1", "McNemar p"):
        assert needle in proc.stdout, proc.stdout
    # the eda engine says what it cannot run here, as text: it looked in the hidden places and found nothing
    assert "eda: replace, insert cannot run here" in proc.stderr, proc.stderr
    marked = [line for line in out.splitlines() if MARKUP.search(line)]
    assert not marked, "\n".join(marked)
    # the default store, in the new user's home, holds both checkpoints and the summary
    store = home / ".local" / "share" / "laclip"
    [summary] = list((store / "evals").glob("pipeline-*/summary.json"))
    summary = json.loads(summary.read_text())
    assert set(summary["runs"]) == {"CLIP", "LaCLIP"}
    assert all(str(c).endswith("/step_6.pt") for c in summary["checkpoints"].values())

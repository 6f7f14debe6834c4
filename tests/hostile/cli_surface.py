"""The CLI's whole flag surface, read from the command tree itself: generated invocations of every command
(submit rewrite/train/eval/get-eval with --dry-run, --local or neither, rewrites import/export/list, datasets
show/get-eval/suites, data, eval report (--layout paper too), status, logs and cancel against no cluster,
plan, pipeline, version), each of which must succeed or end in one line of message (`error: ...`), never a
traceback. Invocations are drawn by `pick` (hypothesis, or a seeded random.Random for the measured corpus),
with guards that keep them fast: a --local run gets inputs that fail before any work, and nothing waits on
a network (the hub endpoint is a closed port).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

from .harness import Case, Result, good_shard, laclip, write_dataset

OK_TEXT = ["demo", "mine", "cc12m", "laclip-tiny", "r1", "a.b"]
OK_INT = ["1", "2", "3", "8"]
OK_FLOAT = ["0.5", "1", "0.01"]
TEXT = ["demo", "mine", "cc12m", "demo-eval", "", " ", "x" * 70, "a b", "exp[v2]", "[/]", "$(HOME)", "'", '"', "\n",
        "é", "../etc", "-", "a,b", "a=b", "gs://", "gs://b/p", "http://h/v1", "laclip-tiny", "ViT-B-16", "\x1b[31m",
        "zeroshot,fewshot", "r/step_1", "nvidia-tesla-a100", "8", "64Gi", "1:2", "latest", "none"]
INT = ["0", "1", "2", "3", "-1", "64", "65536", "99999999999999999999999", "1e3", "abc", "", " 5", "0x10"]
FLOAT = ["0", "0.5", "1", "-1", "inf", "-inf", "nan", "1e308", "1e-320", "abc", ""]
SETS = ["steps=3", "cluster.queue=a.b", "nope=1", "=1", "x", "seed=99999999999999999999", "cluster.shm=1Ti",
        "tasks=zeroshot", "datasets=[]", "fewshot.episodes=0", "engine_options={\"alpha\": 2}", "epochs=inf",
        "batch_size=1e9", "cluster.gpus=-1", "resume=/", "root=", "meta_pairs={}", "max_image_pixels=0"]
CHOICES = {  # flags whose plausible values are few: those, and some hostile ones
    "--scheduler": ["jobset", "volcano", "kubernetes", "kubernetes_mcad"], "--layout": ["runs", "paper"],
    "--suite": ["laclip-paper", "datacomp"], "--format": ["wds-json", "parquet"],
    "--topology": ["cloud.google.com/gce-topology-block", "kubernetes.io/hostname", "a b", "$(HOME)"],
    "--topology-level": ["cloud.google.com/gce-topology-block", "kubernetes.io/hostname", "a=b"],
    "--repo": ["cub=owner/repo", "x", "=", "vtab-cifar10=a/b/c", "cub=$(HOME)/r"],
    "--source": ["chatgpt=" + "/no/such.parquet", "x", "=", "a=b"], "--original-format": ["parquet", "jsonl", "x"],
    "--choose": ["first", "random", "x"], "--splits": ["test", "train,test", ",", "../x"],
    "--revision": ["main", "0" * 40, "a b", "$(HOME)"], "names": ["laclip-paper", "vtab-cifar10", "nosuch", ","],
}
KUBECONFIG_KINDS = ["missing", "garbage", "unreachable"]


def commands() -> list[tuple[tuple[str, ...], list]]:
    """(command path, its parameters) for every leaf command of `laclip`."""
    import typer

    from laclip_cli.main import app

    found = []

    def walk(cmd, path):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in sorted(subs.items()):
                walk(sub, (*path, name))
        else:
            found.append((path, list(cmd.params)))

    walk(typer.main.get_command(app), ())
    return found


def _value(param, pick: Callable[[Sequence], object], tmp: Path) -> str:
    kind = param.bare_type() if hasattr(param, "bare_type") else "str"
    name = param.opts[0]
    if name in ("--set",):
        return pick(SETS)
    if name in ("--config-file", "--png", "--csv", "--out", "--scratch", "--work-dir", "--original"):
        return pick([str(tmp), str(tmp / "no" / "such.yaml"), str(tmp / "c.yaml"), str(tmp / "chart.png"), "",
                     "-", str(tmp / "t.csv")])
    if name in CHOICES:
        return pick(CHOICES[name] + TEXT[:4])
    if name == "--meta-pairs":
        return pick(["mine=" + str(tmp), "=x", "x", "chatgpt=/no/such/file"])
    if name == "--engine-option":
        return pick(["alpha=0.2", "nosuch=1", "=", "alpha=inf", "retries=-1"])
    hostile = pick([False, False, True])  # mostly plausible values, so that commands get past their flags
    if kind == "int":
        return pick(INT if hostile else OK_INT)
    if kind == "float":
        return pick(FLOAT if hostile else OK_FLOAT)
    return pick(TEXT if hostile else OK_TEXT)


def invocation(pick: Callable[[Sequence], object], tmp: Path) -> tuple[list[str], dict]:
    """One generated `laclip ...` command line and its environment (no cluster, no network)."""
    store = tmp / "store"
    write_dataset(store, "mine", [good_shard("0000")])
    (tmp / "c.yaml").write_text("steps: 3\n")
    path, params = pick(commands())
    argv: list[str] = list(path)
    options = [p for p in params if p.param_type_name == "option"]
    chosen = [pick(options) for _ in range(pick([0, 1, 2, 3, 4]))] if options else []
    for p in params:
        if p.param_type_name == "argument" and pick([True, True, True, False]):
            argv.append(_value(p, pick, tmp) if p.opts[0] not in ("stage",) else pick(["rewrite", "train", "eval",
                                                                                        "nope"]))
    for p in chosen:
        name = p.opts[0].split("/")[0]
        if name in ("--dry-run", "--local", "--help"):
            continue
        if getattr(p, "is_flag", False):
            argv.append(pick([name, *p.secondary_opts]) if p.secondary_opts else name)
        else:
            argv += [name, _value(p, pick, tmp)]
    mode = pick(["--dry-run", "--local", ""]) if path[0] in ("submit", "pipeline") else ""
    root = pick([str(store), str(tmp / "nowhere"), "gs://laclip-bucket/p"])
    # Guards: what would do real work fails first, and nothing waits on a network.
    if mode == "--local" or path[0] == "pipeline":
        root = str(store) if path[0] != "pipeline" else str(tmp / "c.yaml")  # a file: the store cannot be made
        argv += {"rewrite": ["--dataset", "nosuch"], "train": ["--rewrites", "nosuch-set"],
                 "eval": ["--checkpoint", "nosuch/step_1"], "import": ["--dataset", "nosuch"],
                 "get-eval": ["--datasets", "nosuch"]}.get(path[-1], [])
    if mode:
        argv.append(mode)
    if path == ("rewrites", "get-smollm2"):
        argv += ["--out", str(tmp / "c.yaml")]  # a file: refused before the 135M model is converted (40 s)
    if path[0] == "data":
        root = str(tmp / "synth")
        argv += ["--per-shard", pick(["1", "2", "0", "-1", "x"]), "--shards", pick(["1", "2", "0", "x"])]
    if mode != "--dry-run" and path[0] == "submit" and root.startswith("gs://"):
        root = str(store)  # a cluster submit from a gs:// root would ask Google for credentials
    if path == ("submit", "eval") and "--checkpoint" not in argv and "-c" not in argv:
        argv += ["--checkpoint", pick(["gs://b/checkpoints/r/step_1", "r/step_1", ""])]
    kube = pick(KUBECONFIG_KINDS)
    env = {"KUBECONFIG": str(tmp / "kubeconfig"), "STORAGE_EMULATOR_HOST": "http://127.0.0.1:1",
           "LACLIP_GCS_RETRY_TIMEOUT": "0.5", "LACLIP_GCS_REQUEST_TIMEOUT": "0.5",
           "LACLIP_REGISTRY": "us-docker.pkg.dev/test-project/laclip", "COLUMNS": "200",
           "HF_ENDPOINT": "http://127.0.0.1:1", "HF_HUB_ETAG_TIMEOUT": "1", "HF_HUB_DOWNLOAD_TIMEOUT": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_TOKEN": None}
    if kube == "garbage":
        (tmp / "kubeconfig").write_bytes(b"\xff[")
    elif kube == "unreachable":
        (tmp / "kubeconfig").write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: e\nclusters: [{name: e, cluster: {server: "
            "'http://127.0.0.1:1'}}]\ncontexts: [{name: e, context: {cluster: e, user: u}}]\nusers: [{name: u}]\n")
    return ["--root", root, *argv], env


def assert_ends_well(argv: list[str], res: Result) -> None:
    """Success, or one line of message and a non-zero exit: never a traceback, never an internal error."""
    text = res.out + res.err
    assert res.exc is None, f"laclip {argv!r}: {type(res.exc).__name__}: {res.exc}"
    assert "Traceback (most recent call last)" not in text, f"laclip {argv!r}:\n{text[-1500:]}"
    assert res.rc != 70 and "internal error" not in res.err, f"laclip {argv!r}: {res.err[-600:]}"
    if res.rc != 0:
        lines = res.messages
        assert len(lines) == 1 and lines[0].startswith("error: "), f"laclip {argv!r}: {lines[:8]}"


def run_one(pick, tmp: Path) -> None:
    argv, env = invocation(pick, tmp)
    assert_ends_well(argv, laclip(*argv, env=env, cwd=tmp))


def seeded_cases(n: int = 150, seed: int = 11) -> list[Case]:
    import random

    def case(i: int) -> Case:
        def run(tmp: Path) -> None:
            rng = random.Random(f"{seed}-{i}")
            run_one(lambda seq: rng.choice(list(seq)), tmp)
        return Case(11, f"invocation-{i}", run)

    return [case(i) for i in range(n)]


CASES = seeded_cases(int(os.environ.get("HOSTILE_CLI_CASES", "100")))

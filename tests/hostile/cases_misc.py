"""Hostile-input classes 8, 9 and 10: where the command is run from, small tracebacks and misleading answers,
and files and names that others must be able to use."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .harness import (Case, assert_clean_error, assert_ok, good_shard, labelled, laclip, run_entry, write_checkpoint,
                      write_dataset, write_eval_set)


# -- class 8: where the command is run from --------------------------------------------------------
def shadowing_folder(tmp: Path) -> Path:
    """A folder holding packages named like laclip's and torch's that fail on import (the parent of a
    clone, a checkout of torch...): `python -m` would import them from the current folder."""
    here = tmp / "work"
    for name in ("laclip", "torch", "open_clip", "pyarrow"):
        (here / name).mkdir(parents=True)
        (here / name / "__init__.py").write_text(f"raise ImportError('the {name} of the current folder')\n")
    return here


def _from_shadowing_folder(stage: str) -> Case:
    def run(tmp: Path) -> None:
        root = tmp / "store"
        write_dataset(root, "mine", [good_shard("0000"), good_shard("0001")])
        cwd = shadowing_folder(tmp)
        if stage == "rewrite":
            res = laclip("--root", str(root), "submit", "rewrite", "--dataset", "mine", "--engine", "null", "--local",
                         "--workers", "2", cwd=cwd)
        else:
            write_eval_set(root, "evalset", labelled(6))
            ckpt = write_checkpoint(root)
            res = laclip("--root", str(root), "submit", "eval", "--checkpoint", str(ckpt), "--datasets", "evalset",
                         "--tasks", "zeroshot", "--local", "--workers", "0", "--batch-size", "4", cwd=cwd)
        assert_ok(res)
        assert "the laclip of the current folder" not in res.out + res.err
    return Case(8, f"{stage}-local-from-a-folder-holding-laclip", run, slow=True)  # --local: child processes


CLASS8 = [_from_shadowing_folder(s) for s in ("rewrite", "eval")]


# -- class 9: small tracebacks and misleading answers ----------------------------------------------
def _store(tmp: Path) -> Path:
    root = tmp / "store"
    write_dataset(root, "demo", [good_shard("0000")])
    return root


KUBECONFIGS = {
    "binary": b"\xff\xfe\x00garbage", "not-yaml": b"[", "a-list": b"- a\n- b\n", "a-string": b"hello\n",
    "empty-mapping": b"{}\n", "empty": b"", "no-server": b"apiVersion: v1\nkind: Config\nclusters: 5\n",
}
GOOD_KUBECONFIG = ("apiVersion: v1\nkind: Config\ncurrent-context: emu\nclusters: [{name: emu, cluster: "
                   "{server: 'http://127.0.0.1:1'}}]\ncontexts: [{name: emu, context: {cluster: emu, user: dev}}]\n"
                   "users: [{name: dev, user: {}}]\n")


def _usage(name: str, argv_of, *expected: str, env_of=None) -> Case:
    """A command that must end in one line naming the problem (argv_of(tmp) -> argv)."""
    def run(tmp: Path) -> None:
        env = env_of(tmp) if env_of else None
        assert_clean_error(laclip(*argv_of(tmp), env=env), *expected)
    return Case(9, name, run)


def _kube(kind: str, command: list[str]) -> Case:
    def env_of(tmp: Path) -> dict:
        path = tmp / "kubeconfig"
        if kind == "directory":
            path.mkdir()
        else:
            path.write_bytes(GOOD_KUBECONFIG.encode() if kind in ("no-such-context", "unreachable")
                             else KUBECONFIGS[kind])
        return {"KUBECONFIG": str(path)}
    extra = ["--context", "nope"] if kind == "no-such-context" else []
    return _usage(f"kubeconfig-{kind}-{command[0]}", lambda tmp: [*command, *extra], "kubeconfig" if kind not in (
        "unreachable",) else "127.0.0.1", env_of=env_of)


def _resume_garbage(tmp: Path) -> None:
    """A --resume checkpoint that does not load ends the trainer's start in one permanent line."""
    from laclip.train.config import TrainConfig
    from laclip.train.main import main

    root = _store(tmp)
    (root / "checkpoints" / "other").mkdir(parents=True)
    (root / "checkpoints" / "other" / "step_5.pt").write_bytes(b"not a checkpoint")
    cfg = TrainConfig(preset="demo", run="fresh", root=str(root), resume="other/step_5", workers=0, steps=2,
                      tensorboard=False)
    code, logged = run_entry(main, ["--config", cfg.to_arg()])
    assert code == 3 and "does not load" in logged and "Traceback" not in logged, logged[-1200:]


def _engine_option_before_indexes(option: str, *expected: str) -> Case:
    """Refused before any index starts: one line from the CLI, not N failed worker processes."""
    def run(tmp: Path) -> None:
        root = _store(tmp)
        res = laclip("--root", str(root), "submit", "rewrite", "--dataset", "demo", "--local", "--engine-option",
                     option)
        assert_clean_error(res, "engine-option", *expected)
        assert "indexes failed" not in res.err
    return Case(9, f"engine-option-{option.split('=')[0]}-{len(option)}", run)


T = ["--root"]
DRY = ["--dry-run"]
CLASS9 = [
    _usage("meta-pairs-folder", lambda t: T + [str(_store(t)), "submit", "rewrite", "--dataset", "demo", "--local",
                                               "--meta-pairs", f"mine={t}", "--sources", "mine"], "is a folder"),
    _usage("meta-pairs-missing", lambda t: T + [str(_store(t)), "submit", "rewrite", "--dataset", "demo", "--local",
                                                "--meta-pairs", f"mine={t}/no/such.txt"], "does not exist"),
    _usage("resume-folder", lambda t: T + [str(_store(t)), "submit", "train", "--dataset", "demo", "--local",
                                           "--resume", str(t)], "--resume"),
    _usage("resume-run-folder", lambda t: (os.makedirs(f"{t}/store/checkpoints/old", exist_ok=True), open(
        f"{t}/store/checkpoints/old/step_3.pt", "wb").close(), T + [str(t / "store"), "submit", "train", "--dataset",
                                                                    "demo", "--local", "--resume", "old"])[2]
           if _store(t) else None, "step_3"),
    _usage("resume-missing", lambda t: T + [str(_store(t)), "submit", "train", "--dataset", "demo", "--local",
                                            "--resume", "nope/step_9"], "no checkpoint"),
    _usage("resume-outside-the-store", lambda t: T + [str(_store(t)), "submit", "train", "--dataset", "demo",
                                                      "--local", "--resume", "/etc/hostname"], "not in the store"),
    Case(9, "resume-not-a-checkpoint", _resume_garbage),
    _usage("png-folder", lambda t: T + [str(t), "eval", "report", "r", "--png", str(t)], "is a folder"),
    _usage("png-missing-folder", lambda t: T + [str(t), "eval", "report", "r", "--png", f"{t}/no/such/x.png"],
           "does not exist"),
    _usage("png-not-png", lambda t: T + [str(t), "eval", "report", "r", "--png", f"{t}/chart.txt"], "PNG"),
    _usage("seed-23-digits-train", lambda t: ["submit", "train", "--seed", "1" * 23, *DRY], "--seed"),
    _usage("seed-23-digits-rewrite", lambda t: ["submit", "rewrite", "--dataset", "cc12m", "--seed", "9" * 23, *DRY],
           "--seed"),
    _usage("seed-23-digits-eval", lambda t: ["submit", "eval", "--checkpoint", "gs://b/checkpoints/r/step_1",
                                             "--seed", "7" * 23, *DRY], "--seed"),
    _usage("seed-negative", lambda t: ["submit", "train", "--seed", "-1", *DRY], "--seed"),
    _usage("epochs-inf", lambda t: ["submit", "train", "--epochs", "inf", *DRY], "--epochs"),
    _usage("epochs-nan", lambda t: ["submit", "train", "--epochs", "nan", *DRY], "--epochs"),
    _usage("epochs-1e308", lambda t: ["submit", "train", "--epochs", "1e308", *DRY], "--epochs"),
    _usage("lr-inf", lambda t: ["submit", "train", "--lr", "inf", *DRY], "--lr"),
    _usage("beta1-5", lambda t: ["submit", "train", "--set", "beta1=5", *DRY], "beta1"),
    _usage("eps-0", lambda t: ["submit", "train", "--set", "eps=0", *DRY], "eps"),
    _usage("grad-clip-negative", lambda t: ["submit", "train", "--set", "grad_clip=-1", *DRY], "grad_clip"),
    _usage("batch-size-huge", lambda t: ["submit", "train", "--batch-size", "10000000000", *DRY], "--batch-size"),
    _usage("warmup-epochs-1e300", lambda t: ["submit", "train", "--set", "warmup_epochs=1e300", *DRY], "warmup"),
    _usage("lease-timeout-inf", lambda t: ["submit", "train", "--set", "lease_timeout_s=inf", *DRY], "lease"),
    _usage("ttl-int32", lambda t: ["submit", "train", "--set", "cluster.ttl_seconds_after_finished=99999999999",
                                   *DRY], "ttl"),
    _usage("parallelism-huge", lambda t: ["submit", "rewrite", "--dataset", "cc12m", "--parallelism", "10000000000",
                                          *DRY], "--parallelism"),
    _usage("episodes-huge", lambda t: ["submit", "eval", "--checkpoint", "gs://b/checkpoints/r/step_1", "--episodes",
                                       "1000000000000", *DRY], "--episodes"),
    _usage("reg-min-negative", lambda t: ["submit", "eval", "--checkpoint", "gs://b/checkpoints/r/step_1", "--set",
                                          "linear_probe.reg_min=-1", *DRY], "reg_min"),
    _usage("recall-k-zero", lambda t: ["submit", "eval", "--checkpoint", "gs://b/checkpoints/r/step_1", "--set",
                                       "recall_k=[0]", *DRY], "recall_k"),
    _usage("rewrites-empty", lambda t: ["submit", "train", "--rewrites", "", *DRY], "--rewrites"),
    _usage("rewrites-blank", lambda t: ["submit", "train", "--rewrites", "   ", *DRY], "--rewrites"),
    _engine_option_before_indexes("nosuch=1", "nosuch"),
    _engine_option_before_indexes("alpha=abc", "alpha"),
    _engine_option_before_indexes("alpha=5", "alpha"),
    _engine_option_before_indexes("=3"),
    _usage("engine-option-hf-dtype", lambda t: ["submit", "rewrite", "--dataset", "cc12m", "--engine", "hf",
                                                "--model", "m", "--engine-option", "dtype=float99", *DRY], "dtype"),
    *[_usage(f"endpoint-{n}", lambda t, e=e: ["submit", "rewrite", "--dataset", "cc12m", "--engine", "openai",
                                                "--model", "m", "--endpoint", e, *DRY], "--endpoint")
      for n, e in (("no-scheme", "localhost:8000"), ("words", "not a url"), ("ftp", "ftp://h/v1"),
                   ("no-host", "http://"), ("bad-port", "http://h:99999/v1"))],
    *[_usage(f"endpoint-credentials-{n}", lambda t, e=e: ["submit", "rewrite", "--dataset", "cc12m", "--engine",
                                                            "openai", "--model", "m", "--endpoint", e, *DRY],
             "credential")
      for n, e in (("userinfo", "http://user:sk-secret@h:8000/v1"), ("user-only", "https://sk-secret@h/v1"),
                   ("query-key", "http://h/v1?api_key=sk-secret"), ("query-token", "http://h/v1?token=x"))],
    *[_kube(kind, cmd) for kind in (*KUBECONFIGS, "directory", "no-such-context")
      for cmd in (["status"], ["logs", "r", "--stage", "train"], ["cancel", "r", "--yes"])],
    _kube("unreachable", ["status", "r"]),
    _usage("config-file-folder", lambda t: ["submit", "train", "--config-file", str(t), *DRY], "config file"),
    _usage("config-file-binary", lambda t: (t.joinpath("c.yaml").write_bytes(b"\xff\xfe"), ["submit", "train",
                                            "--config-file", str(t / "c.yaml"), *DRY])[1], "config file"),
    _usage("config-file-list", lambda t: (t.joinpath("c.yaml").write_text("- a\n"), ["submit", "train",
                                          "--config-file", str(t / "c.yaml"), *DRY])[1], "config file"),
    _usage("watch-inf", lambda t: ["status", "r", "--watch", "inf"], "--watch"),
    _usage("plan-gpus-0", lambda t: ["plan", "train", "--gpus", "0"], "--gpus"),
    _usage("plan-samples-negative", lambda t: ["plan", "rewrite", "--samples", "-5"], "--samples"),
    _usage("pipeline-steps-huge", lambda t: T + [str(t), "pipeline", "--local", "--steps", "100000000000"],
           "--steps"),
    _usage("pipeline-seed-huge", lambda t: T + [str(t), "pipeline", "--local", "--seed", "9" * 25], "--seed"),
    _usage("logs-tail-negative", lambda t: ["logs", "r", "--stage", "train", "--tail", "-1"], "--tail"),
    _usage("checkpoint-empty", lambda t: ["submit", "eval", "--checkpoint", "", *DRY], "checkpoint"),
    _usage("checkpoint-newline", lambda t: ["submit", "eval", "--checkpoint", "gs://b/checkpoints/r/s\nx", *DRY],
           "checkpoint"),
    _usage("nodes-reversed", lambda t: ["submit", "train", "--nodes", "3:2", *DRY], "--nodes"),
    _usage("nproc-zero", lambda t: T + [str(_store(t)), "submit", "train", "--local", "--nproc", "0"], "--nproc"),
    _usage("synth-shards-zero", lambda t: T + [str(t), "data", "synth", "--shards", "0"], "--shards"),
    _usage("root-empty", lambda t: ["--root", "", "version"], "--root"),
    _usage("root-newline", lambda t: ["--root", "/tmp/a\nb", "datasets", "list"], "control character"),
    _usage("root-gs-typo", lambda t: ["--root", "gs:/bucket", "datasets", "list"], "gs://"),
    _usage("root-bad-bucket", lambda t: ["--root", "gs://Bad_Bucket", "datasets", "list"], "bucket"),
    _usage("set-unknown-field", lambda t: ["submit", "train", "--set", "nope=1", *DRY], "nope"),
    _usage("set-no-value", lambda t: ["submit", "train", "--set", "=1", *DRY], "--set"),
    _usage("sources-reserved", lambda t: ["submit", "rewrite", "--dataset", "cc12m", "--sources", "key", *DRY],
           "key"),
    _usage("image-with-space", lambda t: ["submit", "train", "--image", "r.example/a b:1", *DRY], "image"),
    _usage("unknown-command", lambda t: ["submitt"], "submitt"),
    _usage("unknown-option", lambda t: ["submit", "train", "--stepz", "3"], "--stepz"),
    _usage("missing-argument", lambda t: ["datasets", "show"], "name"),
]


# -- class 10: files others must read, names Kubernetes accepts ------------------------------------
def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _expected_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _modes(what: str) -> Case:
    def run(tmp: Path) -> None:
        from laclip.storage import open_store

        store = open_store(str(tmp / "store"))
        if what == "write":
            store.write_bytes("checkpoints/r/a.json", b"{}")
            files = [tmp / "store/checkpoints/r/a.json"]
        elif what == "create-only-write":
            store.write_bytes("checkpoints/r/b.json", b"{}", create_only=True)
            files = [tmp / "store/checkpoints/r/b.json"]
        elif what == "upload":
            (tmp / "src").write_bytes(b"x")
            store.upload_file(tmp / "src", "checkpoints/r/c.bin")
            files = [tmp / "store/checkpoints/r/c.bin"]
        elif what == "checkpoint":
            import torch

            from laclip.train import checkpoint

            checkpoint.save(store, "r", 7, {"state_dict": {"w": torch.zeros(3)}, "step": 7}, 3)
            files = [tmp / "store/checkpoints/r/step_7.pt"]
        elif what == "export-local-dir":
            from laclip.train import checkpoint

            write_checkpoint(tmp / "store", "r", 2)
            out = checkpoint.export_local_dir(store, "checkpoints/r/step_2.pt", tmp / "export")
            files = sorted(out.iterdir())
        elif what == "download":
            store.write_bytes("checkpoints/r/d.bin", b"x")
            store.download_file("checkpoints/r/d.bin", tmp / "copy.bin")
            files = [tmp / "copy.bin"]
        else:  # data synth and a local rewrite: everything they write
            res = laclip("--root", str(tmp / "store"), "data", "synth", "--shards", "1", "--per-shard", "2")
            assert_ok(res)
            files = [p for p in (tmp / "store").rglob("*") if p.is_file()]
        want = _expected_mode()
        bad = [f"{p} {oct(_mode(p))}" for p in files if _mode(p) != want]
        assert files and not bad, f"not the mode of a new file ({oct(want)}): {bad}"
    return Case(10, f"file-mode-{what}", run)


def _names(stage: str, flag: str, value: str, accepted: bool) -> Case:
    base = {"rewrite": ["--dataset", "cc12m"], "train": ["--dataset", "cc12m"],
            "eval": ["--checkpoint", "gs://b/checkpoints/r/step_1"]}[stage]

    def run(tmp: Path) -> None:
        import yaml

        res = laclip("--root", "gs://bucket/p", "submit", stage, *base, flag, value, "--dry-run")
        if not accepted:
            assert_clean_error(res, value)
            return
        assert_ok(res)
        objs = [d for d in yaml.safe_load_all(res.out[res.out.index("apiVersion"):]) if d]
        assert value in res.out
        for obj in objs:
            if obj["apiVersion"] == "batch/v1":
                import kubernetes_validate

                kubernetes_validate.validate(obj, "1.33", strict=True)
    return Case(10, f"name-{stage}{flag}-{value}", run)


NAMES = [(flag, value) for flag, value in (("--service-account", "laclip.runner"), ("--priority-class", "batch.low"),
                                           ("--queue", "team-a.gpu"))]
CLASS10 = ([_modes(w) for w in ("write", "create-only-write", "upload", "checkpoint", "export-local-dir", "download",
                                "data-synth")]
           + [_names(stage, flag, value, True) for stage in ("rewrite", "train", "eval") for flag, value in NAMES]
           + [_names(stage, "--namespace", "team.a", False) for stage in ("rewrite", "train", "eval")])

CASES = CLASS8 + CLASS9 + CLASS10


def _train_end_to_end(tmp: Path) -> None:
    """`laclip submit train --local`, as a user runs it (the installed command, from a folder that holds a
    `laclip/`), over a dataset with a garbage parquet, a key in two shards, a key twice in one tar, an
    oversized image and a truncated tar: the run ends, trains on the rest and reports every count."""
    import re
    import shutil
    import subprocess
    import sys

    from .cases_data import _dup_across, _dup_in_tar, _image_shard
    from .harness import png

    root = tmp / "store"
    truncated = good_shard("0004")[0]
    write_dataset(root, "mixed", [good_shard("0000"), (good_shard("0001")[0], b"garbage"), _dup_across(1, "0002"),
                                  _dup_in_tar(1, False, "0003"), _image_shard(lambda: png(1100, 1100), "0005"),
                                  (truncated[: len(truncated) // 2], good_shard("0004")[1])])
    laclip_bin = shutil.which("laclip", path=str(Path(sys.executable).parent)) or "laclip"
    proc = subprocess.run([laclip_bin, "--root", str(root), "submit", "train", "--dataset", "mixed", "--preset", "demo",
                           "--local", "--steps", "4", "--batch-size", "6", "--checkpoint-every", "4",
                           "--set", "workers=0", "--set", "log_every=1", "--set", "tensorboard=false",
                           "--run", "mixed-run"],
                          cwd=shadowing_folder(tmp), capture_output=True, text=True, timeout=600)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Traceback" not in text, text[-3000:]
    done = next((ln for ln in text.splitlines() if ln.startswith("done ")), "")
    counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", done)}
    for key in ("unreadable_parquets", "duplicate_keys", "broken_images", "oversized_images", "unreadable_shards"):
        assert counts.get(key, 0) >= 1, f"{key} not reported: {done!r}"
    assert (root / "checkpoints" / "mixed-run" / "step_4.pt").exists()


CASES.append(Case(4, "train-end-to-end-mixed-faults-from-a-shadowing-folder", _train_end_to_end, slow=True))

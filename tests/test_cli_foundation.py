"""The CLI skeleton through the real console script and typer app."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from laclip_cli.main import app

runner = CliRunner()
# The console script beside this Python: CI runs the venv without activating it.
LACLIP = str(Path(sys.executable).with_name("laclip"))


@pytest.mark.slow
def test_help_does_not_import_heavy_libraries():
    code = ("import sys, laclip_cli.main; heavy = {'torch', 'open_clip', 'transformers', 'kubernetes', "
            "'google.cloud.storage', 'vllm'} & set(sys.modules); print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_version_and_root(tmp_path):
    result = runner.invoke(app, ["--root", str(tmp_path), "version"])
    assert result.exit_code == 0 and "laclip 0.1.0" in result.output and str(tmp_path) in result.output


def test_datasets_list_shows_presets(tmp_path):
    result = runner.invoke(app, ["datasets", "list"], env={"LACLIP_ROOT": str(tmp_path), "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in ("cc3m", "cc12m", "redcaps", "laion400m"):
        assert name in result.output
    assert "12,000,000" in result.output


@pytest.mark.slow
def test_synth_then_show(tmp_path):
    env = {**os.environ, "LACLIP_ROOT": str(tmp_path), "COLUMNS": "200"}
    proc = subprocess.run([LACLIP, "data", "synth", "--shards", "2", "--per-shard", "16"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "wrote 32 samples in 2 shards" in proc.stdout
    proc = subprocess.run([LACLIP, "datasets", "show", "demo", "--check"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and "32" in proc.stdout and "consistent" in proc.stdout


@pytest.mark.slow
def test_errors_are_messages_not_tracebacks(tmp_path):
    # cwd and XDG_DATA_HOME in tmp_path: a wrongly accepted root writes there, not in the checkout or ~
    env = {**os.environ, "LACLIP_ROOT": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    for args, needle, code in [
        (["datasets", "show", "nope"], "unknown dataset 'nope'", 1),
        (["--root", "s3://bucket", "datasets", "list"], "unknown storage scheme", 2),
        (["datasets", "show", "Bad_Name"], "invalid dataset name", 2),
        (["--root", "gs://My_Bucket/laclip", "datasets", "list"], "not a valid bucket name", 2),
        (["--root", "gs:/my-bucket/laclip", "data", "synth"], "is not a URL", 2),
        (["--root", "", "data", "synth"], "Invalid value for --root: is empty", 2),  # not the default root
    ]:
        proc = subprocess.run([LACLIP, *args], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert proc.returncode == code, (args, proc.stderr)
        assert needle in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("stage_args", [
    ["rewrite", "--dataset", "cc12m", "--num-shards", "2"],
    ["train", "--dataset", "demo"],
    ["eval", "--checkpoint", "gs://bkt/laclip/checkpoints/r1/step_10"],
])
@pytest.mark.slow
def test_submit_refuses_the_placeholder_registry(stage_args, monkeypatch, tmp_path, request):
    monkeypatch.delenv("LACLIP_REGISTRY")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "never-read"))
    root = "gs://bkt/laclip"
    if stage_args[0] == "train":
        # A cluster submit of train checks its inputs in the store first: give it a bucket (fake-gcs-server)
        # holding the dataset, so that the image is the one problem left.
        from laclip.storage import open_store

        root, demo = request.getfixturevalue("gcs_bucket") + "/laclip", request.getfixturevalue("demo_store")
        bucket = open_store(root)
        for path in demo.list("datasets/demo/"):
            bucket.write_bytes(path, demo.read_bytes(path))
    proc = subprocess.run([LACLIP, "--root", root, "submit", *stage_args], capture_output=True, text=True)
    assert proc.returncode == 2 and "placeholder registry: set LACLIP_REGISTRY" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr

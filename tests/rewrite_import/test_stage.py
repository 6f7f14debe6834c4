"""The rewrite-import stage's Job (pure render, schema-valid), its CLI paths, and a run against
the GCS emulator with the release files in the bucket, one of them gzip-compressed."""

from __future__ import annotations

import gzip
import shutil

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from laclip.config import ClusterOptions
from laclip.rewrite_import.config import ImportConfig
from laclip_cli.main import app
from laclip_jobs.rewrite_import import render

from .release_fixture import SOURCES, write_release

runner = CliRunner()
FILES = {"original": "gs://bkt/release/cc12m_original.csv",
         **{s: f"gs://bkt/release/cc12m_{s}.txt" for s in SOURCES}}


def config(**kw) -> ImportConfig:
    return ImportConfig(dataset="cc12m", root="gs://bkt/laclip", run="import-cc12m-1201-1200-ab12",
                        original=FILES["original"], sources={s: FILES[s] for s in SOURCES},
                        cluster=ClusterOptions(gpus=0, cpu="4", memory="8Gi", image="us-docker.pkg.dev/p/laclip/eval:1",
                                               queue="team-a"), **kw).check()


def test_job_is_schema_valid_and_carries_the_config():
    (job,) = render(config())
    kubernetes_validate.validate(job, "1.33", strict=True)
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert spec["completions"] == 1 and spec["suspend"] is True and pod["restartPolicy"] == "Never"
    assert spec["podFailurePolicy"]["rules"][1] == {"action": "FailJob", "onExitCodes": {
        "containerName": "import", "operator": "In", "values": [3]}}
    assert "nodeSelector" not in pod and "tolerations" not in pod  # a CPU pod: no GPU pool
    (c,) = pod["containers"]
    assert c["command"] == ["python", "-m", "laclip.rewrite_import.main"]
    assert "nvidia.com/gpu" not in c["resources"]["requests"] and c["resources"]["requests"]["ephemeral-storage"]
    worker = ImportConfig.model_validate_json(c["args"][1])
    annotations = job["metadata"]["annotations"]
    assert worker.rewrite_id == config().resolved_rewrite_id() == annotations["laclip.dev/rewrite-id"]
    assert worker.work_dir == "/tmp" and worker.sources == config().sources
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "rewrite-import"
    assert job["metadata"]["annotations"]["laclip.dev/output"] == f"gs://bkt/laclip/rewrites/cc12m/{worker.rewrite_id}/"


def test_cli_dry_run_prints_the_job_and_a_cluster_run_needs_the_bucket(tmp_path):
    args = ["--root", "gs://bkt/laclip", "rewrites", "import", "-d", "cc12m", "--original", FILES["original"],
            *(a for s in SOURCES for a in ("--source", FILES[s]))]
    res = runner.invoke(app, [*args, "--dry-run"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    (job,) = list(yaml.safe_load_all(res.stdout))
    assert job["kind"] == "Job" and job["metadata"]["annotations"]["laclip.dev/rewrite-id"].startswith("import-")
    local = tmp_path / "cc12m_original.csv"
    local.write_text("x\n")
    i = args.index("--original") + 1
    res = runner.invoke(app, [*args[:i], str(local), *args[i + 1:], "--cluster"])
    assert res.exit_code != 0 and "pods cannot read the local folder" in str(res.exception)


def test_import_from_a_bucket_into_a_bucket(demo_copy, gcs_bucket, tmp_path):
    from laclip.rewrite_import.importer import run_import
    from laclip.storage import open_store

    store = open_store(gcs_bucket + "/laclip")
    for path in demo_copy.list("datasets/demo/"):
        store.write_bytes(path, demo_copy.read_bytes(path))
    release = write_release(demo_copy, tmp_path / "release")
    files = dict(release["files"])
    with open(files["bard"], "rb") as src, gzip.open(files["bard"] + ".gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    files["bard"] += ".gz"
    up = open_store(gcs_bucket + "/release")
    urls = {}
    for role, path in files.items():
        name = path.rsplit("/", 1)[-1]
        up.write_bytes(name, open(path, "rb").read())
        urls[role] = f"{gcs_bucket}/release/{name}"
    cfg = ImportConfig(dataset="demo", root=store.url, original=urls["original"], rewrite_id="gcs",
                       sources={s: urls[s] for s in SOURCES})
    totals = run_import(cfg)
    local = run_import(cfg.model_copy(update={"root": demo_copy.url, "original": release["files"]["original"],
                                              "sources": {s: release["files"][s] for s in SOURCES}}))
    assert {k: totals[k] for k in ("captions", "matched", "missing", "ambiguous")} == \
        {k: local[k] for k in ("captions", "matched", "missing", "ambiguous")}
    assert store.exists("rewrites/demo/gcs/00003.parquet") and store.exists("rewrites/demo/gcs/config.json")
    assert run_import(cfg)["reused"] is True
    with pytest.raises(Exception, match="does not exist"):
        run_import(cfg.model_copy(update={"original": f"{gcs_bucket}/release/none.csv", "rewrite_id": "x"}))


@pytest.mark.slow
def test_checkov_passes_the_import_job_with_the_documented_skips(tmp_path):
    """The same checkov configuration as every other stage (manifests/checkov.yaml)."""
    import json
    import subprocess
    from pathlib import Path

    from laclip_jobs.common import dump_yaml

    from tests.tools import dev_tool

    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "import.yaml").write_text(dump_yaml(render(config())))
    proc = subprocess.run([dev_tool("checkov"), "-d", str(tmp_path), "--quiet", "--compact", "-o", "json",
                           "--config-file", str(repo / "manifests" / "checkov.yaml")],
                          capture_output=True, text=True, timeout=300)
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = sorted({f["check_id"] for r in reports for f in r.get("results", {}).get("failed_checks", [])})
    assert sum(r.get("summary", {}).get("resource_count", 0) for r in reports) >= 1
    assert not failed, failed

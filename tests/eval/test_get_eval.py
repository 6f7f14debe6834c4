"""`laclip datasets get-eval`: evaluation sets copied from a hub into the store by the real
huggingface_hub client (HF_ENDPOINT pointed at a loopback mirror in the hub's layout, tests/eval/
hubmirror.py), into a folder and into gs:// (fake-gcs-server); a second run fetches nothing, an
interrupted one resumes, the source commit is recorded and kept; and the Job that does it for a bucket."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from laclip import layout
from laclip.data.synth import synth_demo
from laclip.eval.datasets import open_eval_dataset, reshard
from laclip.storage import open_store
from laclip_cli.main import app

from .hubmirror import HubMirror

CIFAR, FOOD = "clip-benchmark/wds_vtab-cifar10", "clip-benchmark/wds_food101"


def _set_files(root, test_shards: int) -> dict[str, bytes]:
    """A small labelled set in CLIP_benchmark's webdataset layout, as its hub repository holds it."""
    store = open_store(str(root))
    synth_demo(store, shards=1, per_shard=8, eval_train_per_class=2, eval_test_per_class=3)
    reshard(store, "datasets/demo-eval/test", test_shards)
    prefix = "datasets/demo-eval/"
    files = {p[len(prefix):]: store.read_bytes(p) for p in store.list(prefix)}
    files[".gitattributes"] = b"*.tar filter=lfs diff=lfs merge=lfs -text\n"
    return files


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    return {CIFAR: _set_files(tmp_path_factory.mktemp("cifar"), 3),
            FOOD: _set_files(tmp_path_factory.mktemp("food"), 2)}


@pytest.fixture
def mirror(sets, monkeypatch):
    hub = HubMirror().start()
    for repo, files in sets.items():
        hub.add_commit(repo, files)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    yield hub
    hub.stop()


def get_eval(*args: str):
    return CliRunner().invoke(app, ["datasets", "get-eval", *args])


def gets(hub: HubMirror) -> list[tuple[str, str]]:
    return [(repo, path) for method, repo, _, path, _ in hub.requests if method == "GET"]


def held(store, name: str) -> dict[str, bytes]:
    prefix = layout.dataset_folder(name) + "/"
    return {p[len(prefix):]: store.read_bytes(p) for p in store.list(prefix)}


def check_fetched(store, sets, hub):
    for name, repo in (("vtab-cifar10", CIFAR), ("food101", FOOD)):
        files = held(store, name)
        record = json.loads(files.pop("laclip-source.json"))
        assert files == {k: v for k, v in sets[repo].items() if not k.startswith(".")}  # byte for byte
        assert record["repo"] == repo and record["revision"] == hub.repos[repo][-1][0]
        assert record["endpoint"] == hub.url and record["files"]["test/0.tar"]["sha256"]
        ds = open_eval_dataset(store, name)  # what the eval stage reads
        assert ds.nshards("test") == (3 if name == "vtab-cifar10" else 2) and ds.has_split("train")
        assert len(ds.classnames()) == 8 and sum(1 for _ in ds.iter_samples("test")) == 24


def test_two_sets_into_a_folder_then_nothing_to_fetch(mirror, sets, tmp_path):
    root = str(tmp_path / "store")
    res = get_eval("vtab-cifar10,food101", "--root", root, "--scratch", str(tmp_path / "scratch"))
    assert res.exit_code == 0, res.output + repr(res.exception)
    store = open_store(root)
    check_fetched(store, sets, mirror)
    expected = sorted((repo, p) for repo, files in sets.items() for p in files if not p.startswith("."))
    assert sorted(gets(mirror)) == expected  # every file once, dot files left out
    assert f"{len(expected)} files fetched" in res.output
    mirror.requests.clear()
    calls = len(mirror.api_calls)
    again = get_eval("vtab-cifar10,food101", "--root", root)
    assert again.exit_code == 0, again.output
    assert "nothing to fetch" in again.output and "up to date" in again.output
    assert mirror.requests == [] and len(mirror.api_calls) == calls  # the record answers: no hub contact


def test_two_sets_into_a_bucket(mirror, sets, gcs_bucket, tmp_path):
    res = get_eval("vtab-cifar10,food101", "--root", f"{gcs_bucket}/team", "--scratch", str(tmp_path / "s"))
    assert res.exit_code == 0, res.output + repr(res.exception)
    store = open_store(f"{gcs_bucket}/team")
    check_fetched(store, sets, mirror)
    mirror.requests.clear()
    again = get_eval("vtab-cifar10,food101", "--root", f"{gcs_bucket}/team")
    assert again.exit_code == 0 and "nothing to fetch" in again.output and gets(mirror) == []


@pytest.mark.slow
def test_an_interrupted_fetch_resumes(mirror, sets, tmp_path):
    """Killed inside test/1.tar: the file before it stays in the store, nothing half-written shows, and
    the next run fetches only what is missing (test/1.tar again from its start: the huggingface_hub
    installed here keeps no partial download across processes) and clears the scratch folder."""
    root, scratch = tmp_path / "store", tmp_path / "scratch"
    mirror.block("test/1.tar")
    env = {**os.environ, "PYTHONSAFEPATH": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "laclip_cli.main", "datasets", "get-eval", "vtab-cifar10",
                             "--root", str(root), "--scratch", str(scratch), "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        assert mirror.reached.wait(60), proc.communicate(timeout=5)[0]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        mirror.release()
    store = open_store(str(root))
    assert set(held(store, "vtab-cifar10")) == {"laclip-source.json", "test/0.tar"}  # shards first, no nshards.txt
    with pytest.raises(Exception, match="has not finished; fetch it with `laclip datasets get-eval vtab-cifar10"):
        open_eval_dataset(store, "vtab-cifar10")
    assert list(scratch.rglob("*.incomplete"))  # what the killed download left
    mirror.requests.clear()
    res = get_eval("vtab-cifar10", "--root", str(root), "--scratch", str(scratch), "--workers", "1")
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "fetched 7 files" in res.output and "1 were here" in res.output
    fetched = [p for _, p in gets(mirror)]
    assert sorted(fetched) == sorted(p for p in sets[CIFAR] if not p.startswith(".") and p != "test/0.tar")
    assert held(store, "vtab-cifar10") == {**{k: v for k, v in sets[CIFAR].items() if not k.startswith(".")},
                                           "laclip-source.json": store.read_bytes(layout.dataset_source(
                                               "vtab-cifar10"))}
    assert not list(scratch.rglob("*.incomplete"))


def test_the_recorded_commit_is_kept_and_splits_can_follow(mirror, sets, tmp_path):
    root = str(tmp_path / "store")
    first = mirror.repos[CIFAR][-1][0]
    assert get_eval("vtab-cifar10", "--root", root, "--splits", "test").exit_code == 0
    store = open_store(root)
    assert not any(p.startswith("train/") for p in held(store, "vtab-cifar10"))
    newer = dict(sets[CIFAR], **{"classnames.txt": b"changed\n" * 8, "train/0.tar": b"not the same"})
    mirror.add_commit(CIFAR, newer)  # the hub moved on
    mirror.requests.clear()
    res = get_eval("vtab-cifar10", "--root", root)  # now train too (the suites' tasks read it)
    assert res.exit_code == 0, res.output
    assert {rev for _, _, rev, _, _ in mirror.requests} == {first}  # from the recorded commit only
    files = held(store, "vtab-cifar10")
    assert files["train/0.tar"] == sets[CIFAR]["train/0.tar"] and files["classnames.txt"] == sets[CIFAR][
        "classnames.txt"]
    clash = get_eval("vtab-cifar10", "--root", root, "--revision", mirror.repos[CIFAR][-1][0])
    assert clash.exit_code != 0 and "holds clip-benchmark/wds_vtab-cifar10 at" in str(clash.exception)


def test_what_cannot_be_fetched_says_why(mirror, tmp_path):
    root = str(tmp_path / "store")
    cub = get_eval("cub,vtab-cifar10", "--root", root)
    assert cub.exit_code != 0 and "CLIP_benchmark publishes no copy of CUB" in str(cub.exception)
    assert "--repo cub=OWNER/REPO" in str(cub.exception)
    assert "vtab-cifar10" in cub.output and "fetched" in cub.output  # the other set was fetched all the same
    nowhere = get_eval("mine", "--root", root, "--repo", "mine=nobody/none")
    assert nowhere.exit_code != 0 and f"no dataset repository nobody/none on {mirror.url}" in str(nowhere.exception)
    bad = get_eval("vtab-cifar10", "--root", root, "--repo", "vtab-cifar10=not a repo")
    assert bad.exit_code != 0 and "a hub repository is OWNER/NAME" in str(bad.exception)
    # a folder laclip did not fetch is left alone
    store = open_store(root)
    store.write_text("datasets/food101/test/nshards.txt", "1\n")
    kept = get_eval("food101", "--root", root)
    assert kept.exit_code == 0 and "kept as it is" in kept.output and store.list("datasets/food101/") == [
        "datasets/food101/test/nshards.txt"]


def test_the_hub_unreachable_is_retried_not_permanent(tmp_path, monkeypatch):
    from laclip.fetch.config import FetchConfig
    from laclip.fetch.worker import fetch

    cfg = FetchConfig(datasets="vtab-cifar10", root=str(tmp_path / "s"), endpoint="http://127.0.0.1:9")
    with pytest.raises(Exception) as info:
        fetch(cfg)
    assert "cannot reach the hub at http://127.0.0.1:9" in str(info.value) and not info.value.permanent


def test_a_suite_names_what_its_protocol_reads():
    from laclip.fetch.config import FetchConfig

    paper = FetchConfig(datasets="laclip-paper", root="gs://b")
    assert len(paper.datasets) == 16 and paper.dataset_splits["imagenet1k"] == ["test", "train"]
    comp = FetchConfig(datasets="datacomp", root="gs://b")
    assert len(comp.datasets) == 37 and "winogavil" not in comp.datasets  # no task laclip can run on it
    assert set(map(tuple, comp.dataset_splits.values())) == {("test",)}  # zero-shot and retrieval: test only
    assert comp.repo_of("wilds-iwildcam") == "djghosh/wds_wilds-iwildcam_test"
    assert FetchConfig(datasets="mine", root="/x", repos={"mine": "me/wds_mine"}).dataset_splits == {"mine": ["*"]}


@pytest.mark.slow
def test_the_job_for_a_bucket(tmp_path):
    import kubernetes_validate
    import yaml

    from laclip.fetch.config import FetchConfig

    res = CliRunner().invoke(app, ["datasets", "get-eval", "laclip-paper", "--root", "gs://b/team", "--dry-run",
                                   "--token-secret", "hf-token", "--queue", "cpu"],
                             env={"HF_ENDPOINT": "https://hub.example.com"})
    assert res.exit_code == 0, res.output + repr(res.exception)
    (job,) = [d for d in yaml.safe_load_all(res.stdout[res.stdout.index("apiVersion"):]) if d]
    kubernetes_validate.validate(job, "1.33", strict=True)
    spec = job["spec"]
    assert (spec["completions"], spec["completionMode"], spec["parallelism"]) == (16, "Indexed", 4)
    assert spec["backoffLimitPerIndex"] >= 1 and spec["suspend"] is True
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "laclip.fetch.main"]
    assert "nvidia.com/gpu" not in container["resources"]["requests"] and "nodeSelector" not in pod
    env = {e["name"]: e for e in container["env"]}
    assert env["HF_ENDPOINT"]["value"] == "https://hub.example.com"  # the endpoint this shell uses
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "HF_TOKEN"}
    cfg = FetchConfig.model_validate_json(container["args"][1])
    assert cfg.root == "gs://b/team" and cfg.scratch == "/scratch" and cfg.datasets[0] == "imagenet1k"
    local = CliRunner().invoke(app, ["datasets", "get-eval", "food101", "--root", str(tmp_path), "--job"])
    assert local.exit_code != 0 and "pods cannot read the local folder" in str(local.exception)
    # the pod's entrypoint: JOB_COMPLETION_INDEX picks the dataset; a set with no source fails for good
    from laclip.errors import EXIT_PERMANENT

    proc = subprocess.run([sys.executable, "-m", "laclip.fetch.main", "--config", cfg.model_copy(
        update={"root": str(tmp_path / "s"), "scratch": str(tmp_path / "x")}).model_dump_json(exclude={"cluster"})],
        env={**os.environ, "JOB_COMPLETION_INDEX": "4"}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_PERMANENT and "cub: nothing to fetch it from" in proc.stderr + proc.stdout


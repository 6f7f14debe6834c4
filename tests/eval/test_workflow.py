"""The CI workflow: valid against GitHub's workflow schema, keyless auth, submits and summarises."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

WORKFLOW = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "eval.yml"


def load() -> dict:
    doc = yaml.safe_load(WORKFLOW.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


def test_matches_github_workflow_schema():
    schema = json.loads(resources.files("check_jsonschema.builtin_schemas.vendor")
                        .joinpath("github-workflows.json").read_text())
    jsonschema.validate(load(), schema)


def test_triggers_auth_submit_and_summary():
    doc = load()
    assert doc["on"]["workflow_dispatch"]["inputs"]["checkpoint"]["required"] is True
    assert doc["on"]["push"]["tags"] == ["eval/**"]
    assert doc["permissions"]["id-token"] == "write"  # Workload Identity Federation, no keys
    steps = doc["jobs"]["eval"]["steps"]
    uses = {s.get("uses", "").split("@")[0]: s for s in steps}
    auth = uses["google-github-actions/auth"]["with"]
    assert set(auth) == {"workload_identity_provider", "service_account"}
    assert "credentials_json" not in WORKFLOW.read_text()
    assert {"cluster_name", "location"} <= set(uses["google-github-actions/get-gke-credentials"]["with"])
    order = [s.get("uses", "").split("@")[0] or s.get("name") for s in steps]
    assert order.index("google-github-actions/auth") < order.index("google-github-actions/get-gke-credentials")
    runs = [s for s in steps if "run" in s]
    submit = next(s for s in runs if "laclip" in s["run"] and "submit eval" in s["run"])
    assert "--wait" in submit["run"] and '--checkpoint "$CHECKPOINT"' in submit["run"]
    assert order.index("google-github-actions/get-gke-credentials") < steps.index(submit)
    summary = next(s for s in runs if "GITHUB_STEP_SUMMARY" in s["run"])
    assert "eval report" in summary["run"] and "--markdown" in summary["run"]
    # Inputs go through env, never into the script text (no script injection).
    assert all("${{ github.event.inputs" not in s["run"] and "${{ inputs" not in s["run"] for s in runs)


def test_installs_what_the_report_step_needs():
    """The summary step draws the --png chart: matplotlib must be installed (the base install has none)."""
    steps = load()["jobs"]["eval"]["steps"]
    runs = [s["run"] for s in steps if "run" in s]
    install = next(i for i, r in enumerate(runs) if "pip install" in r)
    report = next(i for i, r in enumerate(runs) if "eval report" in r)
    assert install < report and "--png" in runs[report]
    assert "matplotlib" in runs[install] or "[eval]" in runs[install] or "[report]" in runs[install]


def test_summary_shows_intervals_and_compares_with_a_baseline():
    import tomllib

    extras = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert any(d.startswith("scipy") for d in extras["report"]) and any(d.startswith("matplotlib")
                                                                        for d in extras["report"])
    doc = load()
    steps = doc["jobs"]["eval"]["steps"]
    summary = next(s["run"] for s in steps if "run" in s and "GITHUB_STEP_SUMMARY" in s["run"])
    assert "interval" in summary and 'eval compare "$INPUT_BASELINE" "$CHECKPOINT" --markdown' in summary
    assert doc["jobs"]["eval"]["env"]["INPUT_BASELINE"].startswith("${{ github.event.inputs.baseline")

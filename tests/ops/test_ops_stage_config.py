"""The stage contract (laclip_cli.stage): every `laclip submit <stage>` takes `--set FIELD=VALUE` and
`--config-file FILE` (JSON or YAML) for any config field, nested ones included, and says what is wrong
in one line; and a new config field reaches the CLI, the renderer and the container entrypoint
without a change to cli/."""

from __future__ import annotations

import dataclasses
import json
import shlex

import pytest
import typer
import yaml
from pydantic import Field
from typer.testing import CliRunner

from laclip.errors import UsageError
from laclip.eval.config import EvalConfig
from laclip.train.config import TrainConfig

from .render import ROOT, STAGE_ARGS, dry_run, pod_specs, registered_stages

STAGES = sorted(STAGE_ARGS)


def queue_of(obj: dict) -> str | None:
    """Where a rendered object names its queue: the Volcano Job's spec.queue (train), else the
    Kueue LocalQueue label (rewrite and eval Jobs)."""
    if obj["apiVersion"].startswith("batch.volcano.sh"):
        return obj["spec"].get("queue")
    return obj["metadata"]["labels"].get("kueue.x-k8s.io/queue-name")


def pod_config(obj: dict) -> dict:
    """The stage config the pods get: `--config JSON` in the container args, or in the torchrun
    command line of train's `bash -c` script."""
    container = pod_specs(obj)[0]["containers"][0]
    argv = list(container.get("command", [])) + list(container.get("args", []))
    if argv[:2] == ["bash", "-c"]:
        argv = shlex.split(argv[2])
    return json.loads(argv[argv.index("--config") + 1])


def submitted(stage: str, *extra: str) -> list[dict]:
    code, objs, output, exc = dry_run(stage, *extra)
    assert code == 0, f"laclip submit {stage} {' '.join(extra)} --dry-run failed: {exc!r}\n{output}"
    return objs


@pytest.fixture(autouse=True)
def _stages_registered():
    assert set(STAGES) <= registered_stages()


@pytest.mark.parametrize("stage", STAGES)
def test_set_reaches_nested_and_top_level_fields(stage):
    (obj, *_) = submitted(stage, "--set", "cluster.queue=team-q", "--set", "seed=5")
    assert queue_of(obj) == "team-q" and pod_config(obj)["seed"] == 5
    (plain, *_) = submitted(stage)
    assert queue_of(plain) != "team-q" and pod_config(plain)["seed"] == 0  # the checks can fail


@pytest.mark.parametrize("kind", ["json", "yaml"])
@pytest.mark.parametrize("stage", STAGES)
def test_config_file_sets_nested_fields(stage, kind, tmp_path):
    values = {"cluster": {"queue": "from-file"}, "seed": 9}
    path = tmp_path / f"config.{kind}"
    path.write_text(json.dumps(values) if kind == "json" else yaml.safe_dump(values))
    (obj, *_) = submitted(stage, "--config-file", str(path))
    assert queue_of(obj) == "from-file" and pod_config(obj)["seed"] == 9
    # --config-file, then the flags, then --set: the later one wins, field by field
    (obj, *_) = submitted(stage, "--config-file", str(path), "--queue", "from-flag")
    assert queue_of(obj) == "from-flag" and pod_config(obj)["seed"] == 9
    (obj, *_) = submitted(stage, "--config-file", str(path), "--queue", "from-flag", "--set", "cluster.queue=from-set")
    assert queue_of(obj) == "from-set"


def one_line_error(stage: str, *extra: str) -> str:
    code, objs, output, exc = dry_run(stage, *extra)
    assert code != 0 and isinstance(exc, UsageError), (extra, exc, output)
    text = str(exc)
    assert "\n" not in text.strip() and "Traceback" not in output and "errors.pydantic.dev" not in text, text
    return text


@pytest.mark.parametrize("stage", STAGES)
def test_unknown_fields_and_bad_values_are_one_line(stage, tmp_path):
    text = one_line_error(stage, "--set", "cluster.nope=1")
    assert text.startswith("--set cluster.nope: no field 'nope' in cluster (fields: ") and "queue" in text
    assert one_line_error(stage, "--set", "nope=1").startswith("--set nope: no field 'nope' in the config")
    assert "expected FIELD=VALUE" in one_line_error(stage, "--set", "cluster.queue")
    text = one_line_error(stage, "--set", "cluster.gpus=-1")  # named as the user gave it
    assert text == "invalid --set cluster.gpus -1: Input should be greater than or equal to 0"
    text = one_line_error(stage, "--set", "cluster.spot=maybe")
    assert text.startswith("invalid --set cluster.spot 'maybe': Input should be a valid boolean")
    text = one_line_error(stage, "--set", "cluster.ttl_seconds_after_finished=-5")  # a field without a flag
    assert text == "invalid --set cluster.ttl_seconds_after_finished -5: Input should be greater than or equal to 0"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"cluster": {"queue": "q", "nope": 1}}))
    assert one_line_error(stage, "--config-file", str(bad)).endswith("cluster.nope 1: Extra inputs are not permitted")
    broken = tmp_path / "broken.yaml"
    broken.write_text("cluster: [queue\n")
    assert f"config file {broken} is not JSON or YAML" in one_line_error(stage, "--config-file", str(broken))
    missing = tmp_path / "missing.yaml"
    assert f"cannot read config file {missing}" in one_line_error(stage, "--config-file", str(missing))


# -- a new field, end to end --------------------------------------------------------------------
class TrainWithNewField(TrainConfig):
    newfield: int = Field(0, ge=0, description="a new knob")


class EvalWithNewField(EvalConfig):
    newfield: int = Field(0, ge=0, description="a new knob")


NEW_MODELS = {"train": (TrainConfig, TrainWithNewField), "eval": (EvalConfig, EvalWithNewField)}


@pytest.mark.parametrize("stage", ["train", "eval"])
def test_a_new_config_field_needs_no_change_to_the_cli(stage, monkeypatch, tmp_path):
    from laclip.entrypoint import parser, read_config
    from laclip_cli.stage import command
    from laclip_cli.state import state
    from laclip_cli.submit import STAGES as SUBMIT_STAGES

    base, model = NEW_MODELS[stage]
    declared = dataclasses.replace(SUBMIT_STAGES[stage], config=model)
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """A fresh `laclip submit`, holding only this stage."""

    app.command(stage)(command(declared))
    monkeypatch.setattr(state, "root", ROOT)
    runner = CliRunner()
    result = runner.invoke(app, [stage, *STAGE_ARGS[stage], "--set", "newfield=7", "--dry-run"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    text = result.stdout
    (obj, *_) = [d for d in yaml.safe_load_all(text[text.index("apiVersion"):]) if d]
    config = pod_config(obj)
    assert config["newfield"] == 7  # the renderer put it in the pods' config
    given = tmp_path / "given.yaml"
    given.write_text("newfield: 3\n")
    from_file = runner.invoke(app, [stage, *STAGE_ARGS[stage], "--config-file", str(given), "--dry-run"])
    assert from_file.exit_code == 0, repr(from_file.exception)
    text = from_file.stdout
    assert pod_config(next(d for d in yaml.safe_load_all(text[text.index("apiVersion"):]) if d))["newfield"] == 3
    # The entrypoint reads it back with the same model, from --config as the pods get it, and from a
    # --config-file with a --set as --local runs it.
    back = read_config(model, parser(stage).parse_args(["--config", json.dumps(config)]))
    assert isinstance(back, model) and back.newfield == 7
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    again = read_config(model, parser(stage).parse_args(["--config-file", str(path), "--set", "newfield=8"]))
    assert again.newfield == 8
    # It is a field of the new model only: the stage's own model refuses it, and the new one checks it.
    with pytest.raises(UsageError, match="newfield 7: Extra inputs are not permitted"):
        read_config(base, parser(stage).parse_args(["--config", json.dumps(config)]))
    refused = runner.invoke(app, [stage, *STAGE_ARGS[stage], "--set", "newfield=-1", "--dry-run"])
    assert isinstance(refused.exception, UsageError)
    assert str(refused.exception) == "invalid --set newfield -1: Input should be greater than or equal to 0"
    # and it appears in the --set error's list of fields
    unknown = runner.invoke(app, [stage, *STAGE_ARGS[stage], "--set", "newfeild=7", "--dry-run"])
    assert "newfield" in str(unknown.exception) and "no field 'newfeild'" in str(unknown.exception)


def test_every_flag_is_a_field_and_says_what_the_field_says():
    """Every curated flag names a config field; one that is only its field (`fields()`: `--max-restarts` for
    max_restarts, `--queue` for cluster.queue) takes its help and default from the field's description
    and default, so the help never drifts from the config."""
    from laclip_cli.stage import _field, _help
    from laclip_cli.stages import STAGES as ALL

    derived = 0
    for stage in ALL:
        for flag in stage.flags:
            info = _field(stage.config, flag.field)  # a KeyError names a flag without its field
            if flag.help is None:
                derived += 1
                assert info.description, f"{stage.name} {flag.names[0]}: its field has no description"
                assert _help(stage, flag).startswith(info.description.split("[")[0].strip())
                if flag.names[0].startswith("--") and flag.parse is None:
                    assert flag.names[0] == "--" + flag.field.rsplit(".", 1)[-1].replace("_", "-") or \
                        flag.field == "dataset"
    assert derived >= 100

"""`laclip submit eval --local` on a checkpoint that already has results: another setting that
decides the numbers (templates, class names, model, precision) makes a new result and prints its
numbers, never the first run's; a bad template or class-name file is refused though results exist."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from laclip import layout
from laclip.errors import DataError
from laclip_cli.main import app

from .conftest import TINY

SENTINEL = 0.987654  # written into the first result: printed as 98.77 whenever that file is reused
ZS = "zeroshot_classification"


def zeroshot_results(store) -> dict[str, dict]:
    """result id -> record of every zero-shot result of clip-run/step_1 on demo-eval."""
    return {rid: json.loads(store.read_text(path))
            for ckpt, ds, task, rid, path in layout.eval_results(store, "clip-run")
            if (ckpt, ds, task) == ("step_1", "demo-eval", ZS)}


def headline(record: dict) -> str:
    """How `laclip submit eval` prints a zero-shot record's top-1 accuracy."""
    return f"acc1 {100 * record['metrics']['acc1']:.2f}"


@pytest.fixture
def submit(ckpt_store, tiny_models):
    root = str(ckpt_store.local_path(""))
    env = {"LACLIP_MODEL_CONFIGS": str(tiny_models)}

    def run(*flags: str):
        return CliRunner().invoke(app, ["--root", root, "submit", "eval", "--checkpoint", "clip-run/step_1", "--local",
                                        "--tasks", "zeroshot", "--workers", "0", "--batch-size", "64", *flags], env=env)
    return run


@pytest.fixture
def first_result(ckpt_store, submit):
    """The checkpoint's zero-shot result with the default settings, its acc1 replaced by SENTINEL."""
    res = submit()
    assert res.exit_code == 0, res.output + repr(res.exception)
    [(rid, record)] = zeroshot_results(ckpt_store).items()
    record["metrics"]["acc1"] = SENTINEL
    ckpt_store.write_text(layout.eval_result("clip-run", "step_1", "demo-eval", ZS, rid), json.dumps(record))
    # The same request again reuses it: the sentinel is what it prints (so the checks below can fail).
    again = submit()
    assert again.exit_code == 0, again.output
    assert "acc1 98.77" in again.output and list(zeroshot_results(ckpt_store)) == [rid]
    return rid


@pytest.mark.slow
def test_other_settings_print_new_numbers_never_the_first_runs(ckpt_store, submit, first_result, tmp_path):
    templates = tmp_path / "templates.txt"
    templates.write_text("a blurry photo of a {c}.\nsomething shaped like a {c}.\n")
    names = tmp_path / "classnames.txt"
    names.write_text("\n".join(["disc", "box", "wedge", "asterisk", "rhombus", "plus", "honeycomb", "donut"]) + "\n")
    seen = {first_result}
    for flags, decided in [
        (["--templates", str(templates)], lambda ident: ident["inputs"]["templates"]),
        (["--classnames", str(names)], lambda ident: ident["inputs"]["classnames"]),
        (["--model", TINY], lambda ident: ident["model"]),
        (["--precision", "amp"], lambda ident: ident["precision"]),
    ]:
        res = submit(*flags)
        assert res.exit_code == 0, (flags, res.output, repr(res.exception))
        found = zeroshot_results(ckpt_store)
        [new] = set(found) - seen  # one new result file for the new setting; the earlier ones stay
        assert seen <= set(found)
        record = found[new]
        assert "acc1 98.77" not in res.output, flags  # never the first run's numbers
        assert headline(record) in res.output, (flags, res.output)  # the new record's numbers
        assert decided(record["laclip"]["identity"]) != decided(found[first_result]["laclip"]["identity"])
        seen.add(new)
    assert found[first_result]["metrics"]["acc1"] == SENTINEL  # the first result is left as it was
    assert len(found) == 5


@pytest.mark.slow
def test_bad_templates_or_classnames_are_refused_though_results_exist(ckpt_store, submit, first_result, tmp_path):
    res = submit("--templates", str(tmp_path / "missing-templates.txt"))
    assert res.exit_code != 0 and isinstance(res.exception, DataError)
    assert "template file" in str(res.exception) and "missing-templates.txt' not found" in str(res.exception)
    two = tmp_path / "two-names.txt"
    two.write_text("circle\nsquare\n")  # demo-eval has 8 classes
    res = submit("--classnames", str(two))
    assert res.exit_code != 0 and isinstance(res.exception, DataError)
    assert f"--classnames {two} has 2 names but" in str(res.exception)
    assert "demo-eval/classnames.txt lists 8 classes" in str(res.exception)
    assert "acc1 98.77" not in res.output  # nothing printed as if it were this request's result
    assert list(zeroshot_results(ckpt_store)) == [first_result]

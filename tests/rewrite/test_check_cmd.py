"""`laclip rewrites check --pairs FILE`: the worker's own filters on a file of pairs, one row out per row in,
in order; a bad row ends in one line naming it, and nothing is written."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from laclip.data.shards import write_shard
from laclip.errors import DataError
from laclip.rewrite import output as rout
from laclip.rewrite.config import RewriteConfig
from laclip.rewrite.engines.base import Engine
from laclip.rewrite.worker import run_index
from laclip_cli.main import app, main

PAIRS = [
    {"caption": "a red star on a grey background", "rewrite": " A crimson star against a gray backdrop\nnext"},
    {"caption": "a red star", "rewrite": "Here's a revised version of the caption:", "id": 7},
    {"caption": "a red star", "rewrite": "a blue star"},
    {"caption": "a dog on a couch", "rewrite": "the dog is on the couch"},
    {"caption": "A picture of three diamonds", "rewrite": "A three diamond necklace."},
    {"caption": "   ", "rewrite": "anything at all"},
    {"caption": "two boys on a court", "rewrite": "x => y"},
]


def write_pairs(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_one_verdict_per_row_in_order_with_the_input_fields(tmp_path):
    src, dest = write_pairs(tmp_path / "pairs.jsonl", PAIRS), tmp_path / "out.jsonl"
    res = CliRunner().invoke(app, ["rewrites", "check", "--pairs", src, "--out", str(dest), "--faithfulness",
                                   "builtin"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in dest.read_text().splitlines()]
    assert [r["verdict"] for r in rows] == ["keep", "off_topic", "attribute", "echo", "object", "empty_input",
                                            "scaffolding"]
    assert [{k: v for k, v in r.items() if k not in ("verdict", "detail")} for r in rows] == PAIRS
    assert "'blue'" in rows[2]["detail"] and "'necklace'" in rows[4]["detail"] and rows[0]["detail"] is None
    assert "7 pairs, faithfulness check: builtin" in res.output


class Fixed(Engine):
    """A real engine that answers each prompt with the rewrite given for its caption."""

    name = "fixed"

    def __init__(self, answers: dict[str, str]):
        self.answers = answers

    def generate(self, requests):
        return [self.answers[r.caption] for r in requests]


def test_the_verdicts_are_the_rewrite_workers(demo_copy, tmp_path):
    """The same pairs through the worker (as an engine's outputs) and through the command: the same
    verdicts and details, since both use one RewriteFilter with the worker's defaults."""
    pairs = [p for p in PAIRS if p["caption"].strip()]
    answers = {p["caption"]: p["rewrite"] for p in pairs}
    unique = list(answers)
    write_shard(demo_copy, "datasets/pairs", 0, [{"key": f"k{i}", "caption": c, "jpg": b"\xff\xd8"}
                                                   for i, c in enumerate(unique)])
    cfg = RewriteConfig(dataset="pairs", engine="null", rewrite_id="pairs-1", sources=["human"],
                        faithfulness="builtin")
    run_index(cfg, demo_copy, 0, engine=Fixed(answers))
    table = rout.read_shard(demo_copy, "pairs", "pairs-1", "00000").to_pylist()
    src = write_pairs(tmp_path / "p.jsonl", [{"caption": c, "rewrite": answers[c]} for c in unique])
    res = CliRunner().invoke(app, ["rewrites", "check", "--pairs", src, "--faithfulness", "builtin"])
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == len(table) == len(unique)
    for row, out in zip(table, rows):
        column = None if out["verdict"] == "keep" else \
            out["verdict"] + (f": {out['detail']}" if out["detail"] else "")
        assert row["human_rejected"] == column


@pytest.mark.parametrize("text, message", [
    ('{"caption": "a", "rewrite": "b"}\nnot json\n', "line 2 is not JSON"),
    ('{"caption": "a"}\n', 'line 1 has no "rewrite" field'),
    ('{"caption": 3, "rewrite": "b"}\n', 'line 1: "caption" is int, not a string'),
    ('{"caption": "a", "rewrite": null}\n', 'line 1: "rewrite" is null, not a string'),
    ('["a", "b"]\n', "line 1 is a JSON list, not an object"),
    ('{"caption": "a", "rewrite": "b"}\n\n{"caption": "a", "rewrite": "b"}\n', "line 2 is blank"),
    (b'{"caption": "\xff", "rewrite": "b"}\n', "is not UTF-8 text"),
])
def test_a_bad_row_ends_in_one_line_naming_it_and_writes_nothing(tmp_path, capsys, text, message):
    src = tmp_path / "bad.jsonl"
    (src.write_bytes if isinstance(text, bytes) else src.write_text)(text)
    dest = tmp_path / "out.jsonl"
    with pytest.raises(SystemExit) as exit_:
        main(["rewrites", "check", "--pairs", str(src), "--out", str(dest)])
    err = capsys.readouterr().err
    assert exit_.value.code == DataError.exit_code and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not dest.exists()


def test_blank_lines_at_the_end_are_no_rows_and_a_missing_file_is_a_usage_error(tmp_path, capsys):
    src = write_pairs(tmp_path / "p.jsonl", PAIRS[:2]) + ""
    with open(src, "a") as f:
        f.write("\n\n")
    res = CliRunner().invoke(app, ["rewrites", "check", "--pairs", src])
    assert res.exit_code == 0 and len([ln for ln in res.stdout.splitlines() if ln.startswith("{")]) == 2
    with pytest.raises(SystemExit) as exit_:
        main(["rewrites", "check", "--pairs", str(tmp_path / "nope.jsonl")])
    assert exit_.value.code == 2 and "no such file" in capsys.readouterr().err

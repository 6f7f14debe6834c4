"""Weighted sources (`--text-probs SOURCE=W,...`): checked, recorded in the run config and the resume
keys, and drawn by open_clip's rule by laclip's own loader, one text or several per image."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
import yaml
from scipy.stats import chisquare
from typer.testing import CliRunner

from laclip.errors import UsageError
from laclip.rewrite.draw import check_sources, parse_text_probs, weighted_order
from laclip.train import checkpoint as ckpt
from laclip.train.config import RESUME_KEYS, TrainConfig
from laclip.train.data import choose_texts
from laclip.train.inputs import check_inputs
from laclip_cli.main import app
from laclip_jobs.train import pod_templates
from tests.train.test_job import torchrun_args
from tests.train.train_helpers import SOURCES, write_rewrites

EVEN = "caption=1,chatgpt=1,bard=1,coco=1,human=1"


@pytest.mark.parametrize("text, message", [
    ("caption=2,chatgpt=-1", "a weight is a finite number >= 0"),
    ("caption=inf", "a weight is a finite number >= 0"),
    ("caption=nan", "a weight is a finite number >= 0"),
    ("caption=0,chatgpt=0", "every weight is 0"),
    ("caption=1,caption=2", "names 'caption' twice"),
    ("caption=two", "the weight is not a number"),
    ("caption", "expected SOURCE=WEIGHT"),
    ("Chat-GPT=1", "is no source name"),
    ("", "is empty"),
])
def test_bad_weights_are_refused_with_a_clear_message(text, message):
    with pytest.raises(UsageError, match=message):
        parse_text_probs(text)


def test_weights_are_normalised_and_must_name_every_source():
    assert parse_text_probs("caption=2,chatgpt=1") == parse_text_probs("caption=4, chatgpt=2") == \
        {"caption": round(2 / 3, 12), "chatgpt": round(1 / 3, 12)}
    check_sources(parse_text_probs(EVEN), list(SOURCES), "set rw1")
    with pytest.raises(UsageError, match="missing: human"):
        check_sources(parse_text_probs("caption=1,chatgpt=1,bard=1,coco=1"), list(SOURCES), "set rw1")
    with pytest.raises(UsageError, match="unknown: gpt4"):
        check_sources(parse_text_probs(EVEN + ",gpt4=1"), list(SOURCES), "set rw1")


def test_the_weights_are_checked_against_the_rewrite_set_before_a_start(demo_copy):
    write_rewrites(demo_copy)
    base = dict(run="r", root=demo_copy.url, preset="demo", rewrites="rw1")
    check_inputs(TrainConfig(**base, text_probs=parse_text_probs(EVEN)), demo_copy)
    with pytest.raises(UsageError, match="missing: coco, human"):
        check_inputs(TrainConfig(**base, text_probs=parse_text_probs("caption=1,chatgpt=1,bard=1")), demo_copy)
    with pytest.raises(ValueError, match="needs --rewrites"):
        TrainConfig(run="r", preset="demo", text_probs={"caption": 1})


def test_recorded_in_the_run_config_and_a_changed_weight_is_another_run(demo_copy):
    result = CliRunner().invoke(app, ["--root", "gs://bucket/x", "submit", "train", "--dataset", "cc12m",
                                      "--rewrites", "X", "--text-probs", "caption=2,chatgpt=1,bard=1,coco=1,human=1",
                                      "--dry-run"])
    assert result.exit_code == 0, result.output
    (job,) = list(yaml.safe_load_all(result.stdout))
    args = torchrun_args(pod_templates(job)[0])
    cfg = json.loads(args[args.index("--config") + 1])
    assert cfg["text_probs"] == pytest.approx({"caption": 1 / 3, **{s: 1 / 6 for s in SOURCES}}, abs=1e-12)
    assert "text_probs" in RESUME_KEYS
    write_rewrites(demo_copy)
    first = TrainConfig(run="r", preset="demo", rewrites="rw1", text_probs=parse_text_probs(EVEN)).model_dump()
    ckpt.write_run_config(demo_copy, "r", first, RESUME_KEYS)
    ckpt.write_run_config(demo_copy, "r", dict(first), RESUME_KEYS)  # the same run: fine
    changed = {**first, "text_probs": parse_text_probs("caption=2,chatgpt=1,bard=1,coco=1,human=1")}
    with pytest.raises(UsageError, match="text_probs"):
        ckpt.write_run_config(demo_copy, "r", changed, RESUME_KEYS)


def test_weighted_order_puts_weight_zero_last_in_order():
    rng = random.Random(0)
    firsts = Counter(weighted_order(["a", "b", "c", "z"], [3, 1, 0, 0], rng)[0] for _ in range(8000))
    assert set(firsts) == {"a", "b"} and chisquare([firsts["a"], firsts["b"]], [6000, 2000]).pvalue > 1e-4
    assert weighted_order(["a", "b", "c"], [0, 0, 0], rng) == ["a", "b", "c"]


def test_the_draw_follows_the_weights_among_the_texts_that_exist():
    """A rejected rewrite (bard here) does not exist: the others keep their relative weights."""
    probs = parse_text_probs("caption=2,chatgpt=1,bard=1,coco=0,human=1")
    rng, n = random.Random(1), 12_000
    drawn = Counter(choose_texts("orig", ["c", "h", "k"], rng, 1, 1, ("chatgpt", "human", "coco"), probs)[0][0]
                    for _ in range(n))
    assert set(drawn) == {"orig", "c", "h"}  # coco weighs 0: a fallback that never comes first here
    assert chisquare([drawn["orig"], drawn["c"], drawn["h"]], [n / 2, n / 4, n / 4]).pvalue > 1e-4
    # weight 0 on the original: it is drawn only when no weighted text exists (a fallback, as in open_clip)
    only = parse_text_probs("caption=0,chatgpt=1,bard=1,coco=1,human=1")
    assert choose_texts("orig", [], rng, 1, 1, (), only)[0] == ["orig"]
    assert {choose_texts("orig", ["c"], rng, 1, 1, ("chatgpt",), only)[0][0] for _ in range(50)} == {"c"}


def test_multi_text_draws_are_distinct_and_weighted():
    probs = parse_text_probs("caption=4,chatgpt=1,bard=1,coco=1,human=1")
    rng = random.Random(2)
    pairs = [choose_texts("orig", ["c", "b"], rng, 2, 1, ("chatgpt", "bard"), probs)[0] for _ in range(6000)]
    assert all(len(set(p)) == 2 for p in pairs)
    firsts = Counter(p[0] for p in pairs)
    assert chisquare([firsts["orig"], firsts["c"], firsts["b"]], [4000, 1000, 1000]).pvalue > 1e-4
    four = choose_texts("orig", ["c"], rng, 4, 1, ("chatgpt",), probs)[0]  # more asked than there are
    assert len(four) == 4 and set(four) <= {"orig", "c"} and set(four[:2]) == {"orig", "c"}


def test_without_weights_the_uniform_draw_is_unchanged():
    """Runs without --text-probs draw exactly as before (the same texts for the same seed)."""
    rng, ref = random.Random(5), random.Random(5)
    assert [choose_texts("o", ["x", "y"], rng, 1, 1)[0][0] for _ in range(50)] == \
        [ref.choice(["o", "x", "y"]) for _ in range(50)]

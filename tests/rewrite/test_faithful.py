"""The faithfulness check among the rewrite filters: what passes (rewording, synonyms, hypernyms,
reordering, a dropped detail), what is rejected (a changed or added colour, number, size, position, shape
or thing, a scene added, no description at all, a near-echo), and that every rejection names its word."""

from __future__ import annotations

import pytest

from laclip.rewrite import wordnet
from laclip.rewrite.filters import REASONS, RewriteFilter, faithfulness_here, reason_of

HAS_WORDNET = wordnet.reader()[0] is not None


@pytest.fixture(scope="module", params=["builtin", "wordnet"])
def flt(request):
    if request.param == "wordnet" and not HAS_WORDNET:
        pytest.skip(f"no WordNet on this machine ({wordnet.source()}); CI has Debian's wordnet-base")
    return RewriteFilter(request.param)


def verdict(flt, caption: str, rewrite: str):
    return flt(" " + rewrite + "\nnext line", flt.prepare(caption))


@pytest.mark.parametrize("caption, rewrite", [
    ("a red dog on the beach", "a crimson dog runs along the sand"),  # synonym colour, implied sand
    ("a dog running on the beach", "A joyful dog sprints along the sandy shoreline as waves roll in."),
    ("Large red square on a grey background", "A big scarlet square against a gray backdrop."),
    ("two blue stars in the top left", "A pair of blue stars in the upper left corner."),
    ("There is a medium red hexagon in the bottom left", "In the lower left corner sits a red hexagon."),
    ("a single diamond drawn in green over grey", "one green diamond drawn on a grey background"),
    ("three horses grazing in a meadow", "Several horses graze on a grassy field."),
    ("a golden retriever catching a frisbee in the park", "A dog leaps to catch a flying disc in the park."),
    ("black cat sitting on a windowsill", "a black cat sitting on a window"),  # a part of the caption's compound
    ("Woman in a red dress walking down a city street", "A lady in a scarlet gown strolls through the city."),
    ("Wooden chair isolated on white background", "A wooden seat on a plain white backdrop."),
    ("elderly couple holding hands on a park bench", "An old man and woman hold hands on a bench in the park."),
    ("red car parked on the street", "A parked red car at the side of a street"),
    ("a hexagon", "a six-sided shape"),  # a hypernym plus a hyphenated synonym
    ("a red square", "a red rectangle"),  # a square is a rectangle
    ("IMG_4821 star", "a star"),  # a dropped detail
    ("a picture of a circle", "a photo of a circle"),
])
def test_faithful_rewrites_are_kept(flt, caption, rewrite):
    v = verdict(flt, caption, rewrite)
    assert v.reason is None, v.column


@pytest.mark.parametrize("caption, rewrite, reason, word", [
    ("a red star", "a blue star", "attribute", "'blue'"),  # a colour changed
    ("a star on a grey background", "a yellow star on a grey background", "attribute", "'yellow'"),  # added
    ("a single circle", "two circles", "attribute", "'two'"),
    ("a picture of a circle", "circles of different sizes", "attribute", "'circles'"),  # plural for one
    ("a medium red hexagon", "the hexagon is surrounded by another hexagon", "attribute", "'another'"),
    ("a large ring", "a small ring", "attribute", "'small'"),
    ("a red star in the middle", "a red star on the left", "attribute", "'left'"),
    ("a red star", "a red star in the top right corner", "attribute", "'top'"),
    ("a picture of a triangle", "a picture of a square", "attribute", "'square'"),
    ("a red rectangle", "a red square", "attribute", "'square'"),  # more specific: not implied
    ("fresh strawberries in a white bowl on a wooden table", "strawberries on a white table", "attribute",
     "'table'"),  # a colour moved to another thing of the caption
    ("two boys playing basketball on an outdoor court", "two boys playing basketball on an indoor court",
     "attribute", "'indoor'"),
    ("A picture of three diamonds", "A three diamond necklace", "object", "'necklace'"),
    ("a picture of a circle", "A circle of people waiting", "object", "'people'"),
    ("a red star", "a red star glowing in the night sky", "object", "'night'"),  # a scene added
    ("Image of a large ring, orange, grey backdrop", "a birthday party", "object", "'ring'"),  # names nothing
    ("a plate of sushi with chopsticks", "a bowl of sushi with chopsticks", "object", "'bowl'"),
    ("a red star", "Here's a revised version of the caption:", "off_topic", "'here's'"),
    ("a red star", "The caption describes a red star.", "off_topic", "'caption'"),
    ("a red star", "I think it is a red star.", "off_topic", "'i'"),
    ("Drawing of a triangle", "A triangle is a polygon with three sides.", "off_topic", "'a triangle is a'"),
    ("a red star", "What is a red star?", "off_topic", "question"),
    ("a red star", "Draw a red star.", "off_topic", "'draw'"),
    ("a red star", "a red star = a crimson star", "off_topic", "'='"),
    ("White cross", "The white cross is a symbol of death.", "off_topic", "definition"),
    ("White cross", "It is a symbol of death.", "off_topic", "'is a symbol'"),
    ("Original sentence", "Original sentence:", "echo", None),
])
def test_unfaithful_rewrites_are_rejected_naming_the_word(flt, caption, rewrite, reason, word):
    v = verdict(flt, caption, rewrite)
    assert v.reason == reason, v.column
    assert v.text == "" and reason in REASONS and reason_of(v.column) == reason
    if word is not None:
        assert word in v.detail, v.detail


@pytest.mark.parametrize("caption, rewrite, near", [
    ("a red dog on the beach", "A red dog on the beach.", False),
    ("a red dog on the beach", "a RED dog,  on the beach!", False),
    ("Two red hexagons on the left", "Two red hexagons are on the left.", True),  # an added copula
    ("a medium red hexagon", "There is a medium red hexagon", True),
    ("A red star in the middle", "red star in middle", True),  # articles dropped
    ("a dog on a couch", "the dog is on the couch", True),
])
def test_echoes_up_to_articles_copulas_and_spacing(flt, caption, rewrite, near):
    v = verdict(flt, caption, rewrite)
    assert v.reason == "echo" and (v.detail is not None) == near
    assert v.column == ("echo" if not near else f"echo: {v.detail}")


def test_the_check_can_be_turned_off_and_echoes_still_count():
    off = RewriteFilter("off")
    assert verdict(off, "a red star", "a blue star").reason is None
    assert verdict(off, "a red star", "Here's a revised version:").reason is None
    assert verdict(off, "a red star", "there is a red star").reason == "echo"


def test_what_wordnet_adds(flt):
    """A thing outside the built-in tables: the tables alone do not judge it, WordNet does (a chest is a
    physical thing that three diamonds do not imply; a poodle's hypernym dog is in the caption)."""
    v = verdict(flt, "A picture of three diamonds", "A picture of three chests.")
    assert (v.reason == "object" and "'chests'" in v.detail) == (flt.faithfulness == "wordnet"), v.column
    assert verdict(flt, "a poodle on a sofa", "a dog on a couch").reason is None
    assert verdict(flt, "a bicycle leaning on a wall", "a bike leaning against a wall").reason is None


def test_auto_is_what_this_machine_has_and_wordnet_without_it_is_refused(monkeypatch):
    assert RewriteFilter("auto").faithfulness == faithfulness_here() == ("wordnet" if HAS_WORDNET else "builtin")
    from laclip.errors import DataError

    monkeypatch.setattr(wordnet, "reader", lambda: (None, "no WordNet database found"))
    with pytest.raises(DataError, match="set to use WordNet.*faithfulness=builtin"):
        RewriteFilter("wordnet")


def test_the_check_is_part_of_the_rewrite_id():
    from laclip.rewrite.config import FILTER_VERSION, RewriteConfig

    ids = {RewriteConfig(dataset="demo", engine="eda", faithfulness=f).resolved_rewrite_id()
           for f in ("wordnet", "builtin", "off")}
    assert len(ids) == 3 and FILTER_VERSION >= 3
    cfg = RewriteConfig(dataset="demo", engine="vllm", model="m")
    assert cfg.for_cluster().faithfulness == "wordnet"  # the rewrite image has WordNet
    here, warning = RewriteConfig(dataset="demo", engine="null").for_this_machine()
    assert here.faithfulness == faithfulness_here() and here.resolved_rewrite_id() == cfg.model_copy(
        update={"engine": "null", "model": None, "faithfulness": faithfulness_here()}).resolved_rewrite_id()
    assert (warning is not None and "built-in word tables" in warning) == (not HAS_WORDNET)


def test_the_short_path_gives_the_full_checks_verdicts():
    """A rewrite made of its caption's words (and plain ones) takes a shorter path: the same verdicts."""
    import json
    import random
    from pathlib import Path

    from laclip.rewrite.faithful import Faithfulness

    judge = Faithfulness()
    captions = sorted({json.loads(line)["caption"] for line in
                       (Path(__file__).parent / "data" / "smollm2_rewrites.jsonl").read_text().splitlines()})
    captions += ["fresh strawberries in a white bowl on a wooden table", "a red circle, a blue square on the left"]
    rng, compared, rejected = random.Random(0), 0, 0
    for caption in captions:
        cap = judge.caption(caption)
        words = caption.split()
        for _ in range(20):
            picked = rng.sample(words, rng.randint(1, len(words))) + rng.sample(["a", "the", "photo", "of", "on"], 2)
            rng.shuffle(picked)
            text = " ".join(picked)
            fast, full = judge.judge(cap, text), judge.judge(cap, text, fast=False)
            assert fast == full, (caption, text, fast, full)
            compared, rejected = compared + 1, rejected + (full is not None)
    assert compared > 1000 and 0 < rejected < compared  # both verdicts were compared

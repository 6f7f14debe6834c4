"""Words and phrases for the faithfulness check (laclip.rewrite.faithful): how a text splits into words,
and the small readings of word order it relies on (a positional phrase, a colour cue, "the shape of a",
a verb after its subject, a number)."""

from __future__ import annotations

import re

from laclip.rewrite.lexicon import Lexicon

_TOKEN = re.compile(r"[a-z0-9]+(?:['\-][a-z0-9]+)*")
_QUOTE = str.maketrans({"\u2019": "'", "\u2018": "'", "\u2010": "-", "\u2011": "-"})
COLOUR_CUES = frozenset("colored coloured color colour hued hue tinted toned tone shade".split())
# a position word counts in a positional phrase only: after one of these (and `the`, `its`...), or
# before side/corner/edge... ("on the left", "top left", "left side"); never "city center", "a red top"
_POS_BEFORE = frozenset("on at in to toward towards near from along of by around".split())
_POS_DETERMINER = frozenset("the its their this that".split())
_POS_AFTER = frozenset("side sides corner corners edge edges half part portion area section hand".split())
_ALWAYS_POSITION = frozenset("centered centred centrally leftmost rightmost topmost bottommost uppermost "
                             "lowermost".split())
_SUBJECTS = frozenset("it he she this that who which".split())
_CONTRACTED = frozenset("here's let's it's that's there's what's he's she's who's".split())


def tokens(text: str) -> list[str]:
    """Lower-case words; a possessive is its noun ("ocean's" -> "ocean"), a contraction stays whole."""
    toks = _TOKEN.findall(text.lower().translate(_QUOTE))
    if "'s" not in text and "\u2019s" not in text:
        return toks
    return [t[:-2] if t.endswith("'s") and t not in _CONTRACTED else t for t in toks]


def verb_after_subject(lex: Lexicon, toks: list[str], i: int) -> bool:
    """`flies` in "a spaceship flies", `plays` in "the dog plays": a word that looks like a plural noun right
    after a singular noun or a pronoun is a verb here."""
    if i == 0 or not toks[i].endswith("s") or toks[i].endswith("ss"):
        return False
    before = toks[i - 1]
    return before in _SUBJECTS or (lex.lemma(before) == before and (before in lex.concepts or before in lex.shapes))


def shape_of(toks: list[str], i: int) -> bool:
    """"in the shape of a circle", "shaped like a star": the outline of a thing named, not another thing."""
    before = " ".join(toks[max(0, i - 3):i])
    return before.endswith(("shape of a", "shape of an", "shape of", "shaped like a", "shaped like an", "form of a"))


def colour_cue(toks: list[str], i: int, part: str, word: str) -> bool:
    """A word that is mostly a noun (rose, sand) is a colour here: "rose-coloured", "rose colour", "in rose"."""
    if part != word:
        return any(q in COLOUR_CUES for q in word.split("-"))
    return (i + 1 < len(toks) and toks[i + 1] in COLOUR_CUES) or \
        (i > 0 and toks[i - 1] == "in" and (i + 1 == len(toks) or toks[i + 1] in ("and", "over", "on", "against")))


def generalise(lex: Lexicon, families: set[str]) -> frozenset[str]:
    out, todo = set(), list(families)
    while todo:
        f = todo.pop()
        if f not in out:
            out.add(f)
            todo.extend(lex.shape_general.get(f, ()))
    return frozenset(out)


def number(lex: Lexicon, word: str) -> int | None:
    if word.isdigit():
        return int(word) if len(word) < 7 else None
    return lex.numbers.get(word)


def positional(toks: list[str], i: int, lex: Lexicon) -> bool:
    if toks[i] in _ALWAYS_POSITION:
        return True
    if i + 1 < len(toks) and (toks[i + 1] in _POS_AFTER or toks[i + 1] in lex.positions):
        return True
    j = i - 1
    while j >= 0 and toks[j] in lex.positions:  # "the top left": the word before the run
        j -= 1
    if j >= 0 and toks[j] in _POS_DETERMINER:
        j -= 1
    return j >= 0 and toks[j] in _POS_BEFORE


def say(values) -> str:
    return ", ".join(sorted(set(values))) or "none"

"""Is a rewrite still a description of the same image? The filters' faithfulness and off-topic checks.

A rewrite may reword, reorder, generalise (dog -> animal) or drop a detail. It is rejected when it

- `off_topic`: is no description at all: chatter ("Here's a revised version"), talk about the text
  (caption, sentence, rewrite...), a first- or second-person reply, a definition ("A hexagon is a
  polygon..."), a question, an instruction ("Draw a ...");
- `attribute`: says a colour, a number, a size, a position (left, right, top, bottom, middle, corner)
  or a shape that the caption neither says nor implies (grass implies green; "large" and "huge" are
  one size; a square may be called a rectangle, a rectangle not a square);
- `object`: names a concrete thing the caption neither says nor implies: a synonym (bicycle, bike),
  a hypernym (dog -> animal, pet), or what the caption's things imply (beach -> sand, sea) pass; a new
  thing (a necklace for three diamonds) or an added scene (a park, mountains) does not.

Each rejection names the word it objected to. Without WordNet, the check knows the words of its
built-in tables (laclip.rewrite.lexicon: colours, numbers, sizes, positions, shapes, framing nouns and
some 500 common concrete nouns with their synonyms, hypernyms and implications); a noun outside them
is not judged. With WordNet (laclip.rewrite.wordnet), a noun outside the tables is judged too when
WordNet calls it a physical thing, and a rewrite's noun passes when WordNet relates it to a caption's
noun (same synset, a hypernym, a part), as well as by the tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from laclip.rewrite.lexicon import Lexicon, builtin

_TOKEN = re.compile(r"[a-z0-9]+(?:['\-][a-z0-9]+)*")
_QUOTE = str.maketrans({"\u2019": "'", "\u2018": "'", "\u2010": "-", "\u2011": "-"})
ARTICLES = frozenset("a an the".split())
COPULAS = frozenset("is are was were be been being am 's".split())
COLOUR_CUES = frozenset("colored coloured color colour hued hue tinted toned tone shade".split())
# a position word counts in a positional phrase only: after one of these (and `the`, `its`...), or
# before side/corner/edge... ("on the left", "top left", "left side"); never "city center", "a red top"
_POS_BEFORE = frozenset("on at in to toward towards near from along of by".split())
_POS_DETERMINER = frozenset("the its their this that".split())
_POS_AFTER = frozenset("side sides corner corners edge edges half part portion area section hand".split())
_ALWAYS_POSITION = frozenset("centered centred centrally leftmost rightmost topmost bottommost uppermost "
                             "lowermost".split())
_DEFINING = frozenset("a an the one any used defined known called typically usually often generally commonly "
                      "considered referred simply basically essentially formed made composed shaped".split())
_NOT_SUBJECT = frozenset("this that it there here these those what which who they he she".split())
_DEFINITION_VERB = re.compile(r"\b(?:refers? to|is defined as|is known as|is called|stands for|means that|"
                              r"is a type of|is a kind of|is a word)\b")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower().translate(_QUOTE))


@dataclass
class Caption:
    """What a caption says and implies, computed once per caption and shared by its sources' rewrites."""

    words: frozenset[str]
    allowed: frozenset[str]  # words a rewrite may use: the caption's, their synonyms, hypernyms, implications
    colours: frozenset[str]
    numbers: frozenset[int]
    vague_plural: bool
    singular_only: frozenset[str]  # concepts the caption names only in the singular ("a circle")
    sizes: frozenset[str]
    positions: frozenset[str]
    shapes: frozenset[str]  # shape families the caption says, implies or generalises to
    related: object = None  # the WordNet side (faithful.WordNetSide.caption), or None


class Faithfulness:
    """`caption(text)` once per caption, then `judge(caption, rewrite)` per rewrite: None when it may be
    kept, else (reason, detail). `wordnet`: a WordNetSide, or None for the built-in tables alone."""

    def __init__(self, lexicon: Lexicon | None = None, wordnet=None):
        self.lex = lexicon or builtin()
        self.wordnet = wordnet

    # -- the caption ------------------------------------------------------------------------------
    def caption(self, text: str) -> Caption:
        lex = self.lex
        toks = tokens(text)
        words = set(toks)
        for t in toks:
            if "-" in t:
                words.update(t.split("-"))
        lemmas = {lex.lemma(w) for w in words}
        allowed, implied = set(words) | lemmas, set()
        for w in words:
            implied |= lex.implies.get(w, set())
        for w in lemmas:
            for c in lex.concepts.get(w, ()):
                more, imp = lex.expand(c)
                allowed |= more
                implied |= imp
        for w in list(implied):  # what the implied things are and imply (park -> grass -> green)
            for c in lex.concepts.get(lex.lemma(w), ()):
                more, imp = lex.expand(c)
                allowed |= more
                implied |= imp
        allowed |= implied
        colours = set()
        for i, w in enumerate(toks):
            for p in (w.split("-") if "-" in w and w not in lex.colours else (w,)):
                if p in lex.colours and (p not in lex.weak_colours or _colour_cue(toks, i, p, w)):
                    colours |= lex.colours[p]
            if w == "dark" and not (i + 1 < len(toks) and toks[i + 1] in lex.colours):
                colours |= {"black", "grey", "brown"}
        for w in implied:
            colours |= lex.colours.get(w, frozenset())
        sizes = {lex.sizes[w] for w in words | implied if w in lex.sizes}
        positions = {lex.positions[w] for w in words if w in lex.positions}
        shapes = _generalise(lex, {lex.shapes[w] for w in words | implied if w in lex.shapes})
        numbers, vague = set(), False
        for t in toks:
            v = _number(lex, t)
            if v == 0:
                vague = True
            elif v is not None:
                numbers.add(v)
        singular_only, plural = set(), set()
        for w in toks:
            lem = lex.lemma(w)
            (plural if lem != w else singular_only).add(lem)
        singular_only -= plural
        related = self.wordnet.caption(lemmas, allowed) if self.wordnet is not None else None
        return Caption(frozenset(words), frozenset(allowed), frozenset(colours), frozenset(numbers), vague,
                       frozenset(singular_only), frozenset(sizes), frozenset(positions), frozenset(shapes), related)

    # -- a rewrite --------------------------------------------------------------------------------
    def judge(self, cap: Caption, text: str) -> tuple[str, str] | None:
        toks = tokens(text)
        if not toks:
            return None
        why = self.off_topic(cap, text, toks)
        if why:
            return "off_topic", why
        why = self.attribute(cap, toks)
        if why:
            return "attribute", why
        why = self.new_object(cap, toks)
        if why:
            return "object", why
        return None

    def off_topic(self, cap: Caption, text: str, toks: list[str]) -> str | None:
        chat = self.lex.chatter
        first = toks[0]
        if first in chat["start"] and first not in cap.words:
            return f"starts like a reply: '{first}'"
        for t in toks:
            if t in chat["meta"] and t not in cap.words:
                return f"talks about the text: '{t}'"
            if t in chat["pronoun"] and t not in cap.words:
                return f"speaks in the first or second person: '{t}'"
        if first in chat["imperative"] and first not in cap.words:
            return f"an instruction: '{first}'"
        if text.rstrip().endswith("?"):
            return "a question"
        found = self._definition(toks)
        if found:
            return f"a definition: '{found}'"
        m = _DEFINITION_VERB.search(" ".join(toks))
        if m:
            return f"a definition: '{m.group(0)}'"
        return None

    def _definition(self, toks: list[str]) -> str | None:
        """'A hexagon is a six-sided polygon', '... a triangle is formed by': at the start or after an article,
        a subject of one or two words (not `this`, `there`, nor a framing noun such as `image`), `is` or
        `are`, then a defining word."""
        for start, w in enumerate(toks):
            if start and w not in ARTICLES:
                continue
            i = start + 1 if w in ARTICLES else start
            for j in (i + 1, i + 2):
                if j + 1 < len(toks) and toks[j] in ("is", "are") and toks[j + 1] in _DEFINING:
                    subject = toks[i:j]
                    if not (subject[0] in _NOT_SUBJECT or subject[-1] in self.lex.generic
                            or subject[-1] in _NOT_SUBJECT):
                        return " ".join(toks[start:j + 2])
        return None

    def attribute(self, cap: Caption, toks: list[str]) -> str | None:
        lex = self.lex
        for i, w in enumerate(toks):
            parts = w.split("-") if "-" in w and w not in lex.colours and w not in lex.shapes else (w,)
            for p in parts:
                fam = lex.colours.get(p)
                if fam and "colourful" not in fam and not fam & cap.colours and \
                        (p not in lex.weak_colours or _colour_cue(toks, i, p, w)):
                    return f"colour '{p}' (caption: {_say(cap.colours - {'colourful'})})"
                fam = lex.shapes.get(p)
                if fam and fam not in cap.shapes and p not in cap.allowed:
                    return f"shape '{p}' (caption: {_say(_stated(lex, cap))})"
            v = _number(lex, w)
            if v is not None and not _number_ok(cap, v):
                return f"number '{w}' (caption: {_say_numbers(cap)})"
            if v is None:
                lem = lex.lemma(w)
                if lem != w and lem in cap.singular_only and not cap.numbers - {1} and not cap.vague_plural \
                        and (lem in lex.concepts or lem in lex.shapes):
                    return f"number '{w}' (caption: one {lem})"
            size = lex.sizes.get(w)
            if size and size not in cap.sizes:
                return f"size '{w}' (caption: {_say(cap.sizes)})"
            pos = lex.positions.get(w)
            if pos and pos not in cap.positions and _positional(toks, i, lex):
                if pos == "corner" and cap.positions & {"left", "right"} and cap.positions & {"top", "bottom"}:
                    continue
                return f"position '{w}' (caption: {_say(cap.positions)})"
        return None

    def new_object(self, cap: Caption, toks: list[str]) -> str | None:
        lex = self.lex
        seen = set()
        for w in toks:
            for p in (w.split("-") if "-" in w and w not in lex.concepts else (w,)):
                if p in seen or p in cap.allowed:
                    continue
                seen.add(p)
                lem = lex.lemma(p)
                if lem in cap.allowed or lem in lex.generic or p in lex.generic:
                    continue
                known = lem in lex.concepts
                if known and not (self.wordnet is not None and self.wordnet.related(cap.related, lem)):
                    return f"'{p}' (not in the caption, nor implied by it)"
                if not known and self.wordnet is not None and self.wordnet.is_new_thing(cap.related, p, lex):
                    return f"'{p}' (not in the caption, nor implied by it; WordNet: a physical thing)"
        return None


def _colour_cue(toks: list[str], i: int, part: str, word: str) -> bool:
    """A word that is mostly a noun (rose, sand) is a colour here: "rose-coloured", "rose colour", "in rose"."""
    if part != word:
        return any(q in COLOUR_CUES for q in word.split("-"))
    return (i + 1 < len(toks) and toks[i + 1] in COLOUR_CUES) or \
        (i > 0 and toks[i - 1] == "in" and (i + 1 == len(toks) or toks[i + 1] in ("and", "over", "on", "against")))


def _generalise(lex: Lexicon, families: set[str]) -> frozenset[str]:
    out, todo = set(), list(families)
    while todo:
        f = todo.pop()
        if f not in out:
            out.add(f)
            todo.extend(lex.shape_general.get(f, ()))
    return frozenset(out)


def _number(lex: Lexicon, word: str) -> int | None:
    if word.isdigit():
        return int(word) if len(word) < 7 else None
    return lex.numbers.get(word)


def _number_ok(cap: Caption, v: int) -> bool:
    if v == 0:  # several, many...: not for a caption that counts one
        return bool(cap.numbers - {1}) or cap.vague_plural or 1 not in cap.numbers
    if v in cap.numbers:
        return True
    return v == 1 and not cap.numbers and not cap.vague_plural


def _positional(toks: list[str], i: int, lex: Lexicon) -> bool:
    w = toks[i]
    if w in _ALWAYS_POSITION:
        return True
    if i + 1 < len(toks) and (toks[i + 1] in _POS_AFTER or toks[i + 1] in lex.positions):
        return True
    j = i - 1
    while j >= 0 and toks[j] in lex.positions:  # "the top left": the word before the run
        j -= 1
    if j >= 0 and toks[j] in _POS_DETERMINER:
        j -= 1
    return j >= 0 and toks[j] in _POS_BEFORE


def _stated(lex: Lexicon, cap: Caption) -> set[str]:
    return {lex.shapes[w] for w in cap.words if w in lex.shapes}


def _say(values) -> str:
    return ", ".join(sorted(values)) or "none"


def _say_numbers(cap: Caption) -> str:
    vals = [str(v) for v in sorted(cap.numbers)] + (["several"] if cap.vague_plural else [])
    return ", ".join(vals) or "none"

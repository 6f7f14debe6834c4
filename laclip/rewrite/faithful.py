"""Is a rewrite still a description of the same image? The filters' faithfulness check.

A rewrite may reword, reorder, generalise (dog -> animal) or drop a detail. It is rejected when it

- `off_topic`: is no description at all (laclip.rewrite.offtopic: chatter, talk about the text, a
  definition, a question, an instruction, the prompt's own format);
- `attribute`: says a colour, a number, a size, a position (left, right, top, bottom, middle, corner,
  edge) or a shape that the caption neither says nor implies (grass implies green; "large" and "huge"
  are one size; a square may be called a rectangle, a rectangle not a square); puts one of the
  caption's colours on another of its things ("a white table" for "a white bowl on a wooden table");
  or contradicts the caption (indoor for outdoor, night for morning, old for new...);
- `object`: names a concrete thing the caption neither says nor implies (a synonym, a hypernym such as
  dog -> animal, or what the caption's things imply, beach -> sand, pass; a necklace for three
  diamonds, or an added scene, does not), or names none of the caption's things at all.

Each rejection names the word it objected to. Without WordNet the check knows the words of its built-in
tables (laclip.rewrite.lexicon: colours, numbers, sizes, positions, shapes, contrasts, framing nouns,
and a few hundred common concrete nouns with synonyms, hypernyms and implications); a noun outside
them is not judged. With WordNet (laclip.rewrite.faithful_wordnet) a noun outside the tables is judged
too when WordNet calls it a physical thing, and a noun passes when WordNet relates it to a caption's
word (a synonym, a hypernym, a part) as well as when the tables do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from laclip.rewrite.lexicon import Lexicon, builtin
from laclip.rewrite.offtopic import off_topic

_TOKEN = re.compile(r"[a-z0-9]+(?:['\-][a-z0-9]+)*")
_CLAUSE = re.compile(r"[,;:.!?()\[\]\"]")
_QUOTE = str.maketrans({"\u2019": "'", "\u2018": "'", "\u2010": "-", "\u2011": "-"})
COLOUR_CUES = frozenset("colored coloured color colour hued hue tinted toned tone shade".split())
# a position word counts in a positional phrase only: after one of these (and `the`, `its`...), or
# before side/corner/edge... ("on the left", "top left", "left side"); never "city center", "a red top"
_POS_BEFORE = frozenset("on at in to toward towards near from along of by around".split())
_POS_DETERMINER = frozenset("the its their this that".split())
_POS_AFTER = frozenset("side sides corner corners edge edges half part portion area section hand".split())
_ALWAYS_POSITION = frozenset("centered centred centrally leftmost rightmost topmost bottommost uppermost "
                             "lowermost".split())
_BIND_STOP = frozenset("on in over with against of at by under above below near beside from to for and "
                       "is are was were".split())
_BACKGROUND = frozenset("background backdrop backgrounds backdrops bg".split())
_MIN_COMPOUND = 4  # a rewrite's "window" names the caption's "windowsill": a word of at least 4 letters


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower().translate(_QUOTE))


@dataclass
class Caption:
    """What a caption says and implies, computed once per caption and shared by its sources' rewrites."""

    text: str
    words: frozenset[str]
    allowed: frozenset[str]  # words a rewrite may use: the caption's, their synonyms, hypernyms, implications
    things: frozenset[str]  # the caption's own concrete things (concept and shape words)
    colours: frozenset[str]
    bound: dict  # thing key -> colour families the caption puts on it ("white bowl")
    numbers: frozenset[int]
    vague_plural: bool
    plural_things: bool  # the caption names one of its things in the plural ("circles")
    singular_only: frozenset[str]  # things the caption names only in the singular ("a circle")
    sizes: frozenset[str]
    positions: frozenset[str]
    shapes: frozenset[str]  # shape families the caption says, implies or generalises to
    contrasts: dict  # contrast group -> the side the caption takes
    related: frozenset[str] | None = None  # WordNet's relatives of the caption's words, or None


class Faithfulness:
    """`caption(text)` once per caption, then `judge(caption, rewrite)` per rewrite: None when it may be
    kept, else (reason, detail). `wordnet`: a faithful_wordnet.WordNetSide, or None for the tables alone."""

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
        for w in list(implied):  # what implied things are called, and their colours (park -> grass -> green)
            for c in lex.concepts.get(lex.lemma(w), ()):
                more, imp = lex.expand(c)
                allowed |= more
                implied |= {x for x in imp if x in lex.colours or x in lex.sizes or x in lex.shapes}
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
        things = frozenset(w for w in lemmas if (w in lex.concepts or w in lex.shapes) and w not in lex.generic
                           and (w not in lex.colours or w in lex.weak_colours))  # "orange": a colour here
        plural_things = bool(plural & things)
        related = None
        if self.wordnet is not None:  # the nouns only: "red" and "white" are also persons to WordNet
            attributes = lex.colours.keys() | lex.tones | lex.numbers.keys() | lex.sizes.keys() | lex.positions.keys()
            related = self.wordnet.caption((lemmas | implied) - attributes)
        return Caption(
            text, frozenset(words), frozenset(allowed), things, frozenset(colours), self.bindings(text),
            frozenset(numbers), vague, plural_things, frozenset(singular_only - plural),
            frozenset(lex.sizes[w] for w in words | implied if w in lex.sizes),
            frozenset(lex.positions[w] for w in words if w in lex.positions),
            _generalise(lex, {lex.shapes[w] for w in words | implied if w in lex.shapes}),
            {lex.contrast[w][0]: lex.contrast[w][1] for w in words if w in lex.contrast}, related)

    def thing_key(self, word: str) -> str | None:
        """What a noun names, for colour bindings: its shape family, concept, or `background`."""
        lex = self.lex
        if word in _BACKGROUND:
            return "background"
        lem = lex.lemma(word)
        if lem in lex.shapes:
            return "shape:" + lex.shapes[lem]
        concepts = lex.concepts.get(lem)
        return min(concepts) if concepts and lem not in lex.generic else None

    def bindings(self, text: str) -> dict[str, set[str]]:
        """Thing key -> colour families put on it: a colour and the first thing after it in its clause,
        past other colours and adjectives, before a preposition ("a white bowl on a wooden table")."""
        lex, found = self.lex, {}
        for clause in _CLAUSE.split(text):
            toks = tokens(clause)
            for i, w in enumerate(toks):
                fam = lex.colours.get(w)
                if not fam or "colourful" in fam or (w in lex.weak_colours and not _colour_cue(toks, i, w, w)):
                    continue
                for nxt in toks[i + 1:i + 4]:
                    if nxt in _BIND_STOP:
                        break
                    key = self.thing_key(nxt)
                    if key:
                        found.setdefault(key, set()).update(fam)
                        break
        return found

    # -- a rewrite --------------------------------------------------------------------------------
    def judge(self, cap: Caption, text: str) -> tuple[str, str] | None:
        toks = tokens(text)
        if not toks:
            return None
        why = off_topic(self.lex, cap.words, cap.text, text, toks)
        if why:
            return "off_topic", why
        why = self.attribute(cap, toks) or self.moved_colour(cap, text)
        if why:
            return "attribute", why
        why = self.new_object(cap, toks)
        if why:
            return "object", why
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
                if fam and fam not in cap.shapes and p not in cap.allowed and not self._compound(cap, p):
                    return f"shape '{p}' (caption: {_say(lex.shapes[x] for x in cap.words if x in lex.shapes)})"
            v = _number(lex, w)
            if v is not None and not _number_ok(cap, v):
                return f"number '{w}' (caption: {_say_numbers(cap)})"
            lem = lex.lemma(w)
            if v is None and lem != w and lem in cap.singular_only and not cap.numbers - {1} \
                    and not cap.vague_plural and lem in cap.things:
                return f"number '{w}' (caption: one {lem})"
            size = lex.sizes.get(w)
            if size and size not in cap.sizes:
                return f"size '{w}' (caption: {_say(cap.sizes)})"
            pos = lex.positions.get(w)
            if pos and pos not in cap.positions and _positional(toks, i, lex):
                if not (pos == "corner" and cap.positions & {"left", "right"} and cap.positions & {"top", "bottom"}):
                    return f"position '{w}' (caption: {_say(cap.positions)})"
            side = lex.contrast.get(w)
            if side and cap.contrasts.get(side[0], side[1]) != side[1]:
                return f"'{w}' contradicts the caption ({side[0]})"
        return None

    def moved_colour(self, cap: Caption, text: str) -> str | None:
        """A colour the caption puts on one thing, put on another that the caption names."""
        if not cap.bound:
            return None
        for key, fams in self.bindings(text).items():
            theirs = cap.bound.get(key)
            if theirs is not None and not fams & theirs:
                return f"colour '{_say(fams)}' on '{key.split(':')[-1]}' (caption: {_say(theirs)})"
            if theirs is None and any(fams & f for k, f in cap.bound.items() if k != key) \
                    and any(self.thing_key(w) == key for w in cap.words):
                return f"colour '{_say(fams)}' moved to '{key.split(':')[-1]}'"
        return None

    def new_object(self, cap: Caption, toks: list[str]) -> str | None:
        lex, wn = self.lex, self.wordnet
        seen, named = set(), False
        for w in toks:
            for p in (w.split("-") if "-" in w and w not in lex.concepts and w not in lex.shapes else (w,)):
                if p in seen:
                    continue
                seen.add(p)
                lem = lex.lemma(p)
                if lex.shapes.get(lem) in cap.shapes:  # a shape the caption says or generalises to
                    named = True
                    continue
                if p in cap.allowed or lem in cap.allowed or self._compound(cap, p):
                    named = named or lem in lex.concepts or lem in lex.shapes or p in lex.shapes
                    continue
                if lem in lex.generic or p in lex.generic:
                    continue
                if wn is not None and wn.related(cap.related, lem):
                    named = True
                    continue
                if lem in lex.concepts:
                    return f"'{p}' (not in the caption, nor implied by it)"
                if wn is not None and wn.is_new_thing(cap.related, p, lex):
                    return f"'{p}' (not in the caption, nor implied by it; WordNet: a physical thing)"
        if cap.things and not named:
            return f"names none of the caption's things: {', '.join(repr(t) for t in sorted(cap.things))}"
        return None

    def _compound(self, cap: Caption, word: str) -> bool:
        """`word` is a part of a compound the caption uses (window: windowsill; flower: sunflower)."""
        if len(word) < _MIN_COMPOUND:
            return False
        return any(len(w) >= len(word) + 3 and (w.startswith(word) or w.endswith(word)) for w in cap.words)


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
    if v == 0:  # several, many, another...: not for a caption that counts one
        return not (cap.numbers == {1} or not (cap.numbers or cap.vague_plural or cap.plural_things))
    if v in cap.numbers:
        return True
    return v == 1 and not cap.numbers and not cap.vague_plural


def _positional(toks: list[str], i: int, lex: Lexicon) -> bool:
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


def _say(values) -> str:
    return ", ".join(sorted(set(values))) or "none"


def _say_numbers(cap: Caption) -> str:
    vals = [str(v) for v in sorted(cap.numbers)] + (["several"] if cap.vague_plural else [])
    return ", ".join(vals) or "none"

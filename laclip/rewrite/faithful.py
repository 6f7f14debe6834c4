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
from laclip.rewrite.phrases import (colour_cue, generalise, number, positional, say, shape_of, tokens,
                                    verb_after_subject)

_CLAUSE = re.compile(r"[,;:.!?()\[\]\"]")
_BIND_STOP = frozenset("on in over with against of at by under above below near beside from to for and "
                       "is are was were".split())
_BACKGROUND = frozenset("background backdrop backgrounds backdrops bg".split())
_ONE = frozenset("a an one single lone".split())
# words a rewrite may add to its caption's without the full check looking at it: none of them is judged
_PLAIN = frozenset("a an the of on in at with and to by from for its photo picture image view shot drawing "
                   "illustration".split())
_PUNCT_CUES = frozenset("?:=->→")  # a question, a label, the prompt's format: the off-topic rules decide
_MIN_COMPOUND = 4  # a rewrite's "window" names the caption's "windowsill": a word of at least 4 letters


@dataclass(slots=True)
class Caption:
    """What a caption says and implies, computed once per caption and shared by its sources' rewrites."""

    text: str
    words: frozenset[str]
    allowed: frozenset[str]  # the caption's words, their singulars, and the words its things imply
    concepts: frozenset[str]  # the caption's things and the things they are kinds of: their words are allowed
    things: frozenset[str]  # the caption's own concrete things (concept and shape words)
    colours: frozenset[str]
    bound: dict  # thing key -> colour and size families the caption puts on it ("white bowl", "large windows")
    numbers: frozenset[int]
    vague_plural: bool
    plural_things: bool  # the caption names one of its things in the plural ("circles")
    singular_only: frozenset[str]  # things the caption names only in the singular ("a circle")
    plural_only: frozenset[str]  # things the caption names only in the plural ("two crosses")
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
        self._marked: dict[str, bool] = {}  # word -> whether attribute() has anything to look at in it
        self._scopes: dict[str, tuple] = {}  # word -> scope(word)

    def marked(self, word: str) -> bool:
        """Whether `word` is one the attribute rules look at (a colour, shape, number, size, position or
        contrast word, a plural thing, a hyphenated word, a digit, `a`/`one`...): most words are not, and the
        answer is cached, so a rewrite's plain words cost one dictionary lookup."""
        hit = self._marked.get(word)
        if hit is None:
            lex = self.lex
            hit = ("-" in word or word.isdigit() or word in _ONE or word in lex.colours or word in lex.shapes
                   or word in lex.numbers or word in lex.sizes or word in lex.positions or word in lex.contrast
                   or lex.lemma(word) != word)
            if len(self._marked) < 200_000:
                self._marked[word] = hit
        return hit

    # -- the caption ------------------------------------------------------------------------------
    def scope(self, word: str) -> tuple[frozenset[str], frozenset[str]]:
        """(the concepts a caption saying `word` allows, the words it implies), cached per word: its concepts
        and the concepts they are kinds of, what they imply, and the concepts of the implied things with
        their colours, sizes and shapes (park -> grass -> green)."""
        hit = self._scopes.get(word)
        if hit is not None:
            return hit
        lex = self.lex
        concepts, implied = set(), set(lex.implies.get(word, ()))
        for c in lex.concepts.get(lex.lemma(word), ()):
            kinds, imp = lex.expand(c)
            concepts |= kinds
            implied |= imp
        for w in list(implied):
            for c in lex.concepts.get(lex.lemma(w), ()):
                kinds, imp = lex.expand(c)
                concepts |= kinds
                implied |= {x for x in imp if x in lex.colours or x in lex.sizes or x in lex.shapes}
        hit = (frozenset(concepts), frozenset(implied))
        if len(self._scopes) < 100_000:
            self._scopes[word] = hit
        return hit

    def allows(self, cap: Caption, word: str, lemma: str) -> bool:
        """The caption says or implies `word`, or names a thing `word` is a synonym or a hypernym of."""
        if word in cap.allowed or lemma in cap.allowed:
            return True
        found = self.lex.concepts.get(lemma)
        return bool(found) and not cap.concepts.isdisjoint(found)

    def caption(self, text: str) -> Caption:
        lex = self.lex
        toks = tokens(text)
        words = set(toks)
        for t in toks:
            if "-" in t:
                words.update(t.split("-"))
        lemmas = {lex.lemma(w) for w in words}
        concepts, implied = set(), set()
        for w in words:
            kinds, imp = self.scope(w)
            concepts |= kinds
            implied |= imp
        allowed = words | lemmas | implied
        colours, numbers, vague, singular_only, plural, marked = set(), set(), False, set(), set(), []
        n = len(toks)
        for i, w in enumerate(toks):  # one pass; plain words (most) cost a lookup or two
            lem = lex.lemma(w)
            (plural if lem != w else singular_only).add(lem)
            if w == "dark" and not (i + 1 < n and toks[i + 1] in lex.colours):
                colours |= {"black", "grey", "brown"}
            if not self.marked(w):
                continue
            marked.append(w)
            for p in (w.split("-") if "-" in w and w not in lex.colours else (w,)):
                if p in lex.colours and (p not in lex.weak_colours or colour_cue(toks, i, p, w)):
                    colours |= lex.colours[p]
            v = number(lex, w)
            if v == 0:
                vague = True
            elif v is not None:
                numbers.add(v)
        for w in implied:
            colours |= lex.colours.get(w, frozenset())
        said = [w for w in words if self.marked(w)] + list(implied)
        things = {w for w in lemmas if self.thingish(w)}
        plural_things = bool(plural & things)
        related = None
        if self.wordnet is not None:  # the nouns only: "red" and "white" are also persons to WordNet
            attributes = lex.colours.keys() | lex.tones | lex.numbers.keys() | lex.sizes.keys() | lex.positions.keys()
            related = self.wordnet.caption((lemmas | implied) - attributes)
        bound = self.bindings(text) if any(w in lex.colours or w in lex.sizes for w in marked) else {}
        return Caption(
            text, words, allowed, concepts, things, colours, bound,
            numbers, vague, plural_things, singular_only - plural, (plural - singular_only) & things,
            {lex.sizes[w] for w in said if w in lex.sizes},
            {lex.positions[w] for w in said if w in lex.positions and w not in implied},
            generalise(lex, {lex.shapes[w] for w in said if w in lex.shapes}),
            {lex.contrast[w][0]: lex.contrast[w][1] for w in said if w in lex.contrast}, related)

    def thingish(self, lemma: str) -> bool:
        """A word of the tables that names a thing: not a framing word, nor a colour ("orange" is the
        colour, unless only a cue makes it one)."""
        lex = self.lex
        return (lemma in lex.concepts or lemma in lex.shapes) and lemma not in lex.generic \
            and (lemma not in lex.colours or lemma in lex.weak_colours)

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
        """Thing key -> colour and size families put on it: a colour or size word and the first thing after
        it in its clause, past other adjectives, before a preposition ("a white bowl on a wooden table";
        sizes as `size:large`)."""
        lex, found = self.lex, {}
        for clause in _CLAUSE.split(text):
            toks = tokens(clause)
            for i, w in enumerate(toks):
                fam = lex.colours.get(w)
                if w in lex.sizes:
                    fam = {"size:" + lex.sizes[w]}
                elif not fam or "colourful" in fam or (w in lex.weak_colours and not colour_cue(toks, i, w, w)):
                    continue
                for j in range(i + 1, min(i + 4, len(toks))):
                    if toks[j] in _BIND_STOP:
                        break
                    key = self.thing_key(toks[j])
                    if key:  # the head of a compound is its last noun: "stone tower", "coffee mug"
                        while j + 1 < len(toks) and self.thing_key(toks[j + 1]):
                            j += 1
                            key = self.thing_key(toks[j])
                        found.setdefault(key, set()).update(fam)
                        break
        return found

    # -- a rewrite --------------------------------------------------------------------------------
    def judge(self, cap: Caption, text: str, fast: bool = True) -> tuple[str, str] | None:
        toks = tokens(text)
        if not toks:
            return None
        if fast and cap.words.issuperset(w for w in toks if w not in _PLAIN) and "is" not in toks \
                and "are" not in toks and not _PUNCT_CUES.intersection(text):
            return self.rearranged(cap, text, toks)
        why = off_topic(self.lex, cap.words, cap.text, text, toks)
        if why:
            return "off_topic", why
        why = self.attribute(cap, toks)
        if not why and cap.bound and any(w in self.lex.colours or w in self.lex.sizes for w in toks):
            why = self.moved_colour(cap, text)
        if why:
            return "attribute", why
        why = self.new_object(cap, toks)
        if why:
            return "object", why
        return None

    def rearranged(self, cap: Caption, text: str, toks: list[str]) -> tuple[str, str] | None:
        """judge() for a rewrite made of the caption's own words and plain ones (articles, prepositions,
        framing nouns: the common case of a light rewrite): nothing is added, so what is left to find is a
        colour or size moved to another thing, or the caption's things all dropped. The same verdicts as
        the full path, sooner (a test compares the two)."""
        lex = self.lex
        if cap.bound and any(w in lex.colours or w in lex.sizes for w in toks):
            why = self.moved_colour(cap, text)
            if why:
                return "attribute", why
        if cap.things and not any(lex.lemma(w) in cap.things for w in toks):
            return "object", f"names none of the caption's things: {', '.join(repr(t) for t in sorted(cap.things))}"
        return None

    def attribute(self, cap: Caption, toks: list[str]) -> str | None:
        lex, cached = self.lex, self._marked
        for i, w in enumerate(toks):
            hit = cached.get(w)
            if not (hit if hit is not None else self.marked(w)):
                continue
            parts = w.split("-") if "-" in w and w not in lex.colours and w not in lex.shapes else (w,)
            for p in parts:
                fam = lex.colours.get(p)
                if fam and "colourful" not in fam and not fam & cap.colours and \
                        (p not in lex.weak_colours or colour_cue(toks, i, p, w)):
                    return f"colour '{p}' (caption: {say(cap.colours - {'colourful'})})"
                fam = lex.shapes.get(p)
                if fam and fam not in cap.shapes and not self.allows(cap, p, p) and not self._compound(cap, p) \
                        and not (shape_of(toks, i) and generalise(lex, {fam}) & cap.shapes):
                    return f"shape '{p}' (caption: {say(lex.shapes[x] for x in cap.words if x in lex.shapes)})"
            v = number(lex, w)
            if v is not None and not _number_ok(cap, v):
                return f"number '{w}' (caption: {_say_numbers(cap)})"
            lem = lex.lemma(w)
            if v is None and lem != w and lem in cap.singular_only and not cap.numbers - {1} \
                    and not cap.vague_plural and lem in cap.things and not verb_after_subject(lex, toks, i):
                return f"number '{w}' (caption: one {lem})"
            if w in _ONE and cap.numbers - {1}:
                one = None
                for x in toks[i + 1:i + 4]:
                    if number(lex, x) is not None:  # "a three diamond necklace": counted after all
                        break
                    if lex.lemma(x) in cap.plural_only:
                        one = x
                        break
                if one is not None and lex.lemma(one) == one and one not in {lex.lemma(x) for x in toks if x != one}:
                    return f"number '{w} {one}' (caption: {_say_numbers(cap)})"
            size = lex.sizes.get(w)
            if size and size not in cap.sizes and self._about_the_caption(cap, toks, i):
                return f"size '{w}' (caption: {say(cap.sizes)})"
            pos = lex.positions.get(w)
            if pos and pos not in cap.positions and positional(toks, i, lex):
                if not (pos == "corner" and cap.positions & {"left", "right"} and cap.positions & {"top", "bottom"}):
                    return f"position '{w}' (caption: {say(cap.positions)})"
            side = lex.contrast.get(w)
            if side and cap.contrasts.get(side[0], side[1]) != side[1]:
                return f"'{w}' contradicts the caption ({side[0]})"
        return None

    def _about_the_caption(self, cap: Caption, toks: list[str], i: int) -> bool:
        """A size word says something about the image unless it goes with a thing the caption does not
        name ("in a big city" for "a London street": the new thing, if any, is judged as an object)."""
        for nxt in toks[i + 1:i + 4]:
            if nxt in _BIND_STOP:
                break
            key = self.thing_key(nxt)
            if key:
                lem = self.lex.lemma(nxt)
                return lem in cap.things or lem in cap.words or self.lex.shapes.get(lem) in cap.shapes
        return True

    def moved_colour(self, cap: Caption, text: str) -> str | None:
        """A colour or size the caption puts on one thing, put on another that the caption names."""
        if not cap.bound:
            return None
        for key, found in self.bindings(text).items():
            thing = key.split(":")[-1]
            for kind, fams in (("size", {f for f in found if f.startswith("size:")}),
                               ("colour", {f for f in found if not f.startswith("size:")})):
                if not fams:
                    continue
                theirs = {f for f in cap.bound.get(key, ()) if f.startswith("size:") == (kind == "size")}
                said = say(f.split(":")[-1] for f in fams)
                if theirs and not fams & theirs:
                    return f"{kind} '{said}' on '{thing}' (caption: {say(f.split(':')[-1] for f in theirs)})"
                if not theirs and any(fams & f for k, f in cap.bound.items() if k != key) \
                        and any(self.thing_key(w) == key for w in cap.words):
                    return f"{kind} '{said}' moved to '{thing}'"
        return None

    def new_object(self, cap: Caption, toks: list[str]) -> str | None:
        lex, wn = self.lex, self.wordnet
        seen, named = set(), False
        for i, w in enumerate(toks):
            if w not in cap.words and verb_after_subject(lex, toks, i):
                continue  # "a spaceship flies", "a woman steps": verbs, not the insect or the stairs
            for p in (w.split("-") if "-" in w and w not in lex.concepts and w not in lex.shapes else (w,)):
                if p in seen:
                    continue
                seen.add(p)
                if p in cap.words and not self._marked.get(p, True):  # the common case: a plain word of the caption
                    named = named or self.thingish(p)
                    continue
                lem = lex.lemma(p)
                if lex.shapes.get(lem) in cap.shapes:  # a shape the caption says or generalises to
                    named = True
                    continue
                if lem in lex.generic or p in lex.generic:
                    continue
                if self.allows(cap, p, lem) or self._compound(cap, p):
                    named = named or self.thingish(lem) or p in lex.shapes
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


def _number_ok(cap: Caption, v: int) -> bool:
    if v == 0:  # several, many, another...: not for a caption that counts one
        return not (cap.numbers == {1} or not (cap.numbers or cap.vague_plural or cap.plural_things))
    if v in cap.numbers:
        return True
    return v == 1 and not cap.numbers and not cap.vague_plural


def _say_numbers(cap: Caption) -> str:
    vals = [str(v) for v in sorted(cap.numbers)] + (["several"] if cap.vague_plural else [])
    return ", ".join(vals) or "none"

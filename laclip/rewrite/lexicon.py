"""The faithfulness check's built-in word tables (lexicon.txt beside this file) and a small noun lemmatiser.

The tables name what the check knows without WordNet: colour families, number words, size and position
families, shapes (with the families each generalises), framing nouns that never count as a new object,
and a compact table of common concrete nouns with their synonyms, hypernyms and what a caption naming
them implies (grass: green; beach: sand, sea). laclip.rewrite.faithful holds the rules that use them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

_IRREGULAR = {
    "men": "man", "women": "woman", "children": "child", "people": "person", "feet": "foot", "teeth": "tooth",
    "mice": "mouse", "geese": "goose", "oxen": "ox", "leaves": "leaf", "knives": "knife", "wolves": "wolf",
    "shelves": "shelf", "loaves": "loaf", "halves": "half", "lives": "life", "wives": "wife", "calves": "calf",
    "dice": "die", "cacti": "cactus", "fungi": "fungus", "scarves": "scarf", "thieves": "thief",
}
_NOT_PLURAL = ("ss", "us", "is", "ous", "ics", "news", "species", "series", "glasses")


def singular(word: str) -> str | None:
    """The singular of a regular or common irregular English plural noun, or None when `word` does not
    look plural. A guess from spelling: callers look the result up in a table before trusting it."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if len(word) < 3 or not word.endswith("s") or word.endswith(_NOT_PLURAL):
        return None
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes", "zes", "oes")):
        return word[:-2]
    return word[:-1]


@dataclass
class Lexicon:
    colours: dict[str, frozenset[str]] = field(default_factory=dict)  # word -> colour families
    weak_colours: set[str] = field(default_factory=set)  # colour words that are mostly nouns (rose, sand)
    tones: set[str] = field(default_factory=set)
    numbers: dict[str, int] = field(default_factory=dict)  # word -> value; 0 = vague plural (several)
    sizes: dict[str, str] = field(default_factory=dict)
    positions: dict[str, str] = field(default_factory=dict)
    shapes: dict[str, str] = field(default_factory=dict)  # word -> shape family
    shape_general: dict[str, frozenset[str]] = field(default_factory=dict)  # family -> families it is a kind of
    generic: set[str] = field(default_factory=set)
    concepts: dict[str, set[str]] = field(default_factory=dict)  # word -> concepts it names
    synonyms: dict[str, set[str]] = field(default_factory=dict)  # concept -> its words
    hypernyms: dict[str, set[str]] = field(default_factory=dict)  # concept -> concepts or words it is a kind of
    implied: dict[str, set[str]] = field(default_factory=dict)  # concept -> words a caption naming it allows
    contrast: dict[str, tuple[str, int]] = field(default_factory=dict)  # word -> (group, side)
    implies: dict[str, set[str]] = field(default_factory=dict)  # caption word -> words it allows (sunny: sun)
    chatter: dict[str, set[str]] = field(default_factory=dict)  # start, meta, pronoun, imperative
    _expanded: dict = field(default_factory=dict, repr=False)
    _lemmas: dict = field(default_factory=dict, repr=False)

    def lemma(self, word: str) -> str:
        """The singular of `word` where that is a word of the tables (the tables list some plurals too),
        else `word`. Cached: the filters call it for every word of every rewrite."""
        hit = self._lemmas.get(word)
        if hit is None:
            one = singular(word)
            hit = one if one and (one in self.concepts or one in self.shapes or one in self.generic) else word
            if len(self._lemmas) < 200_000:
                self._lemmas[word] = hit
        return hit

    def is_plural(self, word: str) -> bool:
        return self.lemma(word) != word

    def expand(self, concept: str) -> tuple[frozenset[str], frozenset[str]]:
        """(`concept` and the concepts it is a kind of, transitively; the words they imply)."""
        hit = self._expanded.get(concept)
        if hit is None:
            seen, todo, implied = set(), [concept], set()
            while todo:
                c = todo.pop()
                if c in seen:
                    continue
                seen.add(c)
                implied |= self.implied.get(c, set())
                todo.extend(self.hypernyms.get(c, ()))
            hit = self._expanded[concept] = (frozenset(seen), frozenset(implied))
        return hit


def _words(text: str) -> list[str]:
    return text.split()


def parse(text: str) -> Lexicon:
    lex = Lexicon()
    section = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section in ("tone", "generic"):
            (lex.tones if section == "tone" else lex.generic).update(_words(line))
            continue
        if section == "contrast":
            name, _, rest = line.partition(":")
            for side, words in enumerate(rest.split("|")):
                lex.contrast.update({w: (name.strip(), side) for w in _words(words)})
            continue
        if section == "implies":
            name, _, rest = line.partition(":")
            lex.implies.setdefault(name.strip(), set()).update(_words(rest))
            continue
        if section == "object":
            syn, _, rest = line.partition("|")
            hyper, _, implied = rest.partition("|")
            words = _words(syn)
            if not words:
                continue
            concept = words[0]
            lex.synonyms.setdefault(concept, set()).update(words)
            lex.hypernyms.setdefault(concept, set()).update(_words(hyper))
            lex.implied.setdefault(concept, set()).update(_words(implied))
            for w in words:
                lex.concepts.setdefault(w, set()).add(concept)
            continue
        name, _, rest = line.partition(":")
        name = name.strip()
        if section == "colour":
            for w in _words(rest):
                weak = w.startswith("~")
                w = w.lstrip("~")
                lex.colours[w] = lex.colours.get(w, frozenset()) | {name}
                if weak:
                    lex.weak_colours.add(w)
        elif section == "number":
            for w in _words(rest):
                lex.numbers[w] = int(name)
        elif section == "size":
            lex.sizes.update({w: name for w in _words(rest)})
        elif section == "position":
            lex.positions.update({w: name for w in _words(rest)})
        elif section == "shape":
            words, _, general = rest.partition("|")
            lex.shapes.update({w: name for w in _words(words)})
            lex.shape_general[name] = frozenset(_words(general))
        elif section == "chatter":
            lex.chatter[name] = set(_words(rest))
    # a strong colour word is never weak because another family lists it with ~
    lex.weak_colours -= {w for w in lex.weak_colours if any(w in _strong_words(text, f) for f in lex.colours[w])}
    return lex


def _strong_words(text: str, family: str) -> set[str]:
    for line in text.splitlines():
        if line.startswith(family + ":"):
            return {w for w in line.partition(":")[2].split() if not w.startswith("~")}
    return set()


@lru_cache(maxsize=1)
def builtin() -> Lexicon:
    return parse(resources.files("laclip.rewrite").joinpath("lexicon.txt").read_text(encoding="utf-8"))

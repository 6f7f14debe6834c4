"""The faithfulness check's WordNet side (used where laclip.rewrite.wordnet finds a WordNet 3.0).

For a caption it gathers the lemma names WordNet relates to the caption's words: their synonyms (the
words of their noun senses), hypernyms up to the root (dog -> canine -> animal...), parts (car ->
wheel, roof), and the nouns its adjectives come from (wooden -> wood). A rewrite's noun passes when it
is one of those. A noun outside laclip's own tables is judged at all only when WordNet calls it a
physical thing: its most frequent sense descends from `physical_entity` and the word is used mostly as
a noun (WordNet's sense counts), so verbs and adjectives in noun clothing ("running", "shining") and
abstractions ("beauty", "moment") are never objected to.
"""

from __future__ import annotations

from functools import lru_cache

SENSES = 3  # at most this many noun senses of a caption word: the first, and those tagged in SemCor


class WordNetSide:
    def __init__(self, wn):
        self.wn = wn
        self.NOUN, self.VERB, self.ADJ, self.ADV = wn.NOUN, wn.VERB, wn.ADJ, wn.ADV
        self.physical = wn.synset("physical_entity.n.01")
        self._related = lru_cache(maxsize=100_000)(self._related_uncached)
        self._thing = lru_cache(maxsize=100_000)(self._thing_uncached)

    def base(self, word: str) -> str | None:
        try:
            return self.wn.morphy(word, self.NOUN)
        except Exception:  # nltk raises on odd input (digits with apostrophes...): no noun then
            return None

    def caption(self, words) -> frozenset[str]:
        """Lemma names related to the caption's words and to what they imply by the tables (not to the tables'
        synonyms of them: their rarer senses would relate too much, `hound` a person)."""
        out = set()
        for w in words:
            out |= self._related(w)
        return frozenset(out)

    def _related_uncached(self, word: str) -> frozenset[str]:
        wn, out = self.wn, set()
        base = self.base(word) or word
        for syn in self._senses(base):
            for s in (syn, *syn.closure(lambda x: x.hypernyms() + x.instance_hypernyms())):
                out.update(_names(s))
            for s in syn.part_meronyms() + syn.substance_meronyms() + syn.member_meronyms():
                out.update(_names(s))
        for pos in (self.ADJ, self.VERB):  # wooden -> wood, fishing -> fish
            for syn in wn.synsets(word, pos)[:SENSES]:
                for lemma in syn.lemmas():
                    for rel in lemma.derivationally_related_forms() + lemma.pertainyms():
                        if rel.synset().pos() == self.NOUN:
                            out.add(rel.name().lower())
        return frozenset(out)

    def _senses(self, base: str) -> list:
        """The word's common noun senses: the first, and the next ones WordNet's sense counts have seen;
        never a named entity (`Park` the explorer is no reason to allow `person` beside a park)."""
        found = [s for s in self.wn.synsets(base, self.NOUN) if not s.instance_hypernyms()]
        return found[:1] + [s for s in found[1:SENSES] if _count([s], base) > 0]

    def related(self, caption_related, word: str) -> bool:
        if caption_related is None:
            return False
        base = self.base(word) or word
        return word in caption_related or base in caption_related

    def is_new_thing(self, caption_related, word: str, lex) -> bool:
        """A physical thing WordNet knows that the caption neither says nor implies."""
        if word.isdigit() or len(word) < 3 or word in lex.tones or word in lex.colours:
            return False
        return self._thing(word) and not self.related(caption_related, word)

    def _thing_uncached(self, word: str) -> bool:
        wn = self.wn
        base = self.base(word)
        if base is None:
            return False
        nouns = wn.synsets(base, self.NOUN)
        if not nouns:
            return False
        first = nouns[0]
        if self.physical not in first.closure(lambda x: x.hypernyms() + x.instance_hypernyms()):
            return False
        noun_uses = _count(nouns, base)
        other = 0
        for pos in (self.VERB, self.ADJ, self.ADV):
            b = wn.morphy(word, pos)
            if b is not None:
                other += _count(wn.synsets(b, pos), b) or (1 if pos != self.ADV else 0)
        return noun_uses > other if other else True


def _names(syn) -> set[str]:
    return {lemma.name().replace("_", " ").lower() for lemma in syn.lemmas()}


def _count(synsets, word: str) -> int:
    total = 0
    for syn in synsets:
        for lemma in syn.lemmas():
            if lemma.name().lower() == word:
                total += lemma.count()
    return total

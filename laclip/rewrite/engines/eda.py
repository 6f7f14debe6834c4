"""EDA, the paper's non-LLM baseline (Wei & Zou 2019): synonym replacement, random insertion,
random swap and random deletion, one operation per rewrite, touching about alpha of the words.

Synonyms come from a local WordNet corpus (nltk) when one is installed; without it only swap
and deletion are possible and a warning says so. Every request carries its own seed, so the
rewrites of a caption for the sources chatgpt/bard/coco/human are 4 different, reproducible
augmentations and the output has the same columns as an LLM run (meta pairs are not used).
"""

from __future__ import annotations

import random
import warnings
from functools import lru_cache
from typing import Callable

from laclip.errors import UsageError
from laclip.rewrite.engines.base import Engine, Request

STOPWORDS = frozenset(
    "a an the and or but of to in on at by for with from into onto over under up down out off is are was were be "
    "been being am it its this that these those there here his her their our my your he she they we you i me him "
    "them us as than then so too very can will just not no".split()
)
_PUNCT = ".,;:!?\"'()[]{}"


def wordnet_synonyms() -> Callable[[str], list[str]] | None:
    """A synonym lookup backed by nltk's WordNet, or None when no corpus is installed here."""
    try:
        from nltk.corpus import wordnet

        wordnet.synsets("dog")  # raises LookupError when the corpus is missing
    except (ImportError, LookupError, OSError):
        return None

    @lru_cache(maxsize=100_000)
    def lookup(word: str) -> list[str]:
        found = []
        for syn in wordnet.synsets(word):
            for lemma in syn.lemmas():
                name = lemma.name().replace("_", " ").lower()
                if name != word and name not in found and name.replace(" ", "").isalpha():
                    found.append(name)
        return found

    return lookup


class EdaEngine(Engine):
    name = "eda"
    default_batch = 4096

    def __init__(self, alpha: float = 0.1, synonyms: Callable[[str], list[str]] | None = None, wordnet: bool = True):
        self.alpha = float(alpha)
        if not 0 < self.alpha <= 1:
            raise UsageError(f"eda: alpha is the share of words changed, between 0 and 1, not {alpha!r}")
        self.synonyms = synonyms or (wordnet_synonyms() if wordnet else None)
        if self.synonyms is None:
            msg = ("eda: no WordNet corpus found (nltk.download('wordnet') where a network is available); "
                   "using random swap and deletion only")
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
            self.ops = (self.swap, self.delete)
        else:
            self.ops = (self.replace, self.insert, self.swap, self.delete)

    def info(self) -> dict:
        return {"engine": self.name, "alpha": self.alpha, "wordnet": self.synonyms is not None,
                "operations": [op.__name__ for op in self.ops]}

    def generate(self, requests: list[Request]) -> list[str]:
        return [self.augment(r.caption, r.seed) for r in requests]

    def augment(self, caption: str, seed: int) -> str:
        words = caption.split()
        if len(words) < 2:
            return caption
        rng = random.Random(seed)
        n = max(1, int(self.alpha * len(words)))
        ops = self.ops if len(words) > 2 else [op for op in self.ops if op != self.delete]  # keep 2 words
        op = ops[rng.randrange(len(ops))]
        return " ".join(op(words, n, rng))

    # -- the four operations (each returns a new word list) --------------------------------
    def _candidates(self, words: list[str]) -> list[int]:
        bare = [w.strip(_PUNCT) for w in words]
        return [i for i, w in enumerate(bare) if w.lower() not in STOPWORDS and w.isalpha()]

    def replace(self, words: list[str], n: int, rng: random.Random) -> list[str]:
        out = list(words)
        idx = self._candidates(words)
        rng.shuffle(idx)
        done = 0
        for i in idx:
            core = out[i].strip(_PUNCT)
            syns = self.synonyms(core.lower())
            if syns:
                out[i] = out[i].replace(core, rng.choice(syns), 1)
                done += 1
                if done >= n:
                    break
        return out

    def insert(self, words: list[str], n: int, rng: random.Random) -> list[str]:
        out = list(words)
        idx = self._candidates(words)
        for _ in range(n):
            rng.shuffle(idx)
            for i in idx:
                syns = self.synonyms(words[i].strip(_PUNCT).lower())
                if syns:
                    out.insert(rng.randrange(len(out) + 1), rng.choice(syns))
                    break
        return out

    @staticmethod
    def swap(words: list[str], n: int, rng: random.Random) -> list[str]:
        out = list(words)
        for _ in range(n):
            i, j = rng.sample(range(len(out)), 2)
            out[i], out[j] = out[j], out[i]
        return out

    def delete(self, words: list[str], n: int, rng: random.Random) -> list[str]:
        kept = [w for w in words if rng.random() > self.alpha]  # Wei & Zou: each word with probability alpha
        if len(kept) == len(words):  # delete at least one word so the rewrite differs
            del kept[rng.randrange(len(kept))]
        return kept or [words[rng.randrange(len(words))]]

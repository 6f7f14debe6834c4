"""EDA, the paper's non-LLM baseline (Wei & Zou 2019): synonym replacement, random insertion,
random swap and random deletion, one operation per rewrite, touching about alpha of the words.

Synonyms come from WordNet 3.0 (laclip.rewrite.wordnet: nltk's data, or Debian's wordnet-base
package); without it only swap and deletion are possible, and every run says so. Which
operations ran is part of the rewrite id (the `operations` engine option) and of each shard's
stats (`engine.operations`, `engine.missing`, and `operations_used`: rewrites per operation).
Every request carries its own seed, so the
rewrites of a caption for the sources chatgpt/bard/coco/human are 4 different, reproducible
augmentations and the output has the same columns as an LLM run (meta pairs are not used).
"""

from __future__ import annotations

import random
import warnings
from collections import Counter
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
    """A synonym lookup backed by WordNet (laclip.rewrite.wordnet), or None when none is installed here."""
    from laclip.rewrite import wordnet

    return wordnet.synonyms()


class EdaEngine(Engine):
    """`operations`: which of the four to draw from (default all four; WordNet is then required).
    `wordnet=false` (or a machine without WordNet and no `operations` given, outside a pod) runs
    swap and deletion only, with a warning: the rewrite id and stats record what ran."""

    name = "eda"
    default_batch = 4096

    def __init__(self, alpha: float = 0.1, synonyms: Callable[[str], list[str]] | None = None, wordnet: bool = True,
                 operations: str | None = None):
        from laclip.rewrite import wordnet as wn

        self.alpha = float(alpha)
        if not 0 < self.alpha <= 1:
            raise UsageError(f"eda: alpha is the share of words changed, between 0 and 1, not {alpha!r}")
        asked = wn.parse_operations(operations) if operations is not None or wordnet else \
            tuple(op for op in wn.OPERATIONS if op not in wn.NEEDS_WORDNET)
        needs = [op for op in asked if op in wn.NEEDS_WORDNET]
        self.synonyms = synonyms or (wordnet_synonyms() if needs else None)
        self.source = "given" if synonyms else (wn.source() if needs else None)
        if needs and self.synonyms is None:
            if operations is not None:  # asked for by name (the rewrite id records them): never silently less
                raise UsageError(f"eda: {', '.join(needs)} need WordNet, and {wn.source()}: {wn.HOW}; or pass "
                                 f"--engine-option operations=swap,delete")
            asked = tuple(op for op in asked if op not in wn.NEEDS_WORDNET)
        self.operations = asked
        self.missing = tuple(op for op in wn.OPERATIONS if op not in asked)
        if self.missing:
            warnings.warn(f"eda: running {', '.join(asked)} only, without {', '.join(self.missing)} "
                          f"(no WordNet corpus found: {wn.HOW})", RuntimeWarning, stacklevel=2)
        self.ops = tuple(getattr(self, op) for op in asked)
        self.used: Counter = Counter()

    def info(self) -> dict:
        return {"engine": self.name, "alpha": self.alpha, "wordnet": self.synonyms is not None,
                "wordnet_source": self.source, "operations": list(self.operations), "missing": list(self.missing)}

    def take_counts(self) -> dict:
        """How many rewrites each operation made since the last call (the shard's stats)."""
        counts, self.used = dict(self.used), Counter()
        return counts

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
        self.used[op.__name__] += 1
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

"""Turn an engine's continuation into a rewrite, or say why the original caption is kept.

The continuation is cut at the first newline (the next line would be a new example).
Rejection reasons, counted per source in the shard's stats:

- `empty_input`: the caption itself is empty or blank (nothing to rewrite, no prompt sent)
- `empty`:       nothing but whitespace or quotes before the newline
- `too_short`:   fewer than 2 words (the paper's trainer drops those too); in scripts written
                 without spaces (Chinese, Japanese, Thai...) fewer than 3 such characters
- `echo`:        the input again, up to case, spacing, punctuation, articles (a, an, the), copulas
                 (is, are, was...) and `there` ("There is a red star" echoes "a red star")
- `repetition`:  runaway repetition (a word or a phrase of up to 4 words looping)
- `scaffolding`: still contains the prompt's `=>` or instruction
- `invalid`:     control characters, line separators (U+0085, U+2028, U+2029) or U+FFFD (broken
                 decoding); the input captions are cleaned of the same characters
- `off_topic`, `attribute`, `object`: the faithfulness check (laclip.rewrite.faithful): not a
                 description at all; a colour, number, size, position or shape the caption does not say
                 or imply; a thing the caption does not say or imply. On by default (`faithfulness`:
                 wordnet, builtin or off; see RewriteFilter)

A rejection may carry a detail naming what was objected to; the `<source>_rejected` column then holds
`reason: detail` (`attribute: colour 'blue' (caption: red)`), and `reason_of` gives the reason back.
RewriteFilter is the one code path: the worker and `laclip rewrites check` both use it.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import NamedTuple

from laclip.rewrite.prompts import INSTRUCTION

REASONS = ("empty_input", "empty", "too_short", "echo", "repetition", "scaffolding", "invalid", "off_topic",
           "attribute", "object")
FAITHFULNESS = ("wordnet", "builtin", "off")
# Bounds the work on a runaway output: only its first 2000 characters are looked at (77 tokens of
# ordinary text decode to a few hundred; a long max_new_tokens could exceed this and be cut here).
MAX_OUTPUT_CHARS = 2000
MIN_UNSPACED_CHARS = 3  # about 2 words of a script written without spaces

# As prompts._CONTROL (what clean_caption removes from inputs), tab aside, plus U+FFFD.
_INVALID = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufffd]")
# Han, kana, Thai, Lao, Myanmar, Khmer: written without spaces between words.
_UNSPACED = re.compile(r"[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_ASCII_DROP = (string.punctuation + string.whitespace).encode()
_PUNCT_TO_SPACE = str.maketrans({c: " " for c in string.punctuation + "\u2018\u2019\u201c\u201d\u2013\u2014\u2026"})
_INSTRUCTION_HEAD = INSTRUCTION[:30].lower()
_QUOTES = "\"'`"
# what the echo check ignores besides case, spacing and punctuation
_NO_CHANGE = frozenset("a an the is are was were be been being am there".split())
_WORD = re.compile(r"\w+")


def continuation(text: str) -> str:
    """The first line of the continuation, stripped of spaces and wrapping quotes."""
    line = text.split("\n", 1)[0].strip()
    # Only a quote pair around the whole line: `"a dog" and "a cat"` keeps its quotes.
    if len(line) >= 2 and line[0] == line[-1] and line[0] in _QUOTES and line[0] not in line[1:-1]:
        line = line[1:-1].strip()
    return line


def normal(text: str) -> str:
    """Lower case with punctuation and spaces dropped: two texts that differ only in those are
    the same caption (an echo). ASCII text takes a C fast path (bytes.translate)."""
    return _squash(text.lower())


def _squash(low: str) -> str:
    if low.isascii():
        return low.encode().translate(None, _ASCII_DROP).decode()
    return "".join(low.translate(_PUNCT_TO_SPACE).split())


def near_normal(text: str) -> str:
    """normal() without articles, copulas and `there`: the echo check's second look."""
    return "".join(w for w in _WORD.findall(text.lower()) if w not in _NO_CHANGE)


def reason_of(column_value: str | None) -> str | None:
    """The reason of a `<source>_rejected` value (`attribute: colour 'blue' ...` -> `attribute`)."""
    return column_value.split(":", 1)[0] if column_value else column_value


def _repetitive(words: list[str]) -> bool:
    """Runaway repetition: a word or a phrase of up to 4 words 4+ times in a row ("a dog a dog a dog
    a dog"), or a long output of few distinct words."""
    n = len(words)
    if n < 6:
        return False
    uniq = len(set(words))
    if n >= 12 and uniq <= n // 4:
        return True
    if n - uniq < 3:  # a phrase 4 times in a row repeats at least 3 words
        return False
    for p in range(1, min(4, n // 4) + 1):  # phrase length p: 4 copies are 3p words equal to the word p back
        run = 0
        for a, b in zip(words, words[p:]):
            run = run + 1 if a == b else 0
            if run >= 3 * p:
                return True
    return False


def check(output: str, original_clean: str, original_normal: str | None = None) -> tuple[str, str | None]:
    """(rewrite, None) when the output is usable, else ("", reason): the filters without the faithfulness
    check. `original_normal` is normal(original_clean), when the caller has it already."""
    text, reason, _ = _check(output, original_clean, original_normal, None)
    return text, reason


def _check(output: str, original_clean: str, original_normal: str | None,
           original_near: str | None) -> tuple[str, str | None, str | None]:
    if len(output) > MAX_OUTPUT_CHARS:
        output = output[:MAX_OUTPUT_CHARS]
    text = continuation(output)
    if not text:
        return "", "empty", None
    if (not text.isprintable() and _INVALID.search(text)) or "\ufffd" in text:
        return "", "invalid", None
    low = text.lower()
    if "=>" in text or _INSTRUCTION_HEAD in low:
        return "", "scaffolding", None
    words = low.split()
    if len(words) < 2 and len(_UNSPACED.findall(text)) < MIN_UNSPACED_CHARS:
        return "", "too_short", None
    if _squash(low) == (original_normal if original_normal is not None else normal(original_clean)):
        return "", "echo", None
    if near_normal(low) == (original_near if original_near is not None else near_normal(original_clean)):
        return "", "echo", "the caption up to articles, copulas and spacing"
    if _repetitive(words):
        return "", "repetition", None
    return text, None, None


class Prepared(NamedTuple):
    """What the filters need of one caption, computed once for all its sources' rewrites."""

    clean: str
    normal: str
    near: str
    facts: object  # laclip.rewrite.faithful.Caption, or None with the faithfulness check off


@dataclass(frozen=True)
class Verdict:
    text: str  # the rewrite, or "" when rejected
    reason: str | None = None
    detail: str | None = None

    @property
    def column(self) -> str | None:
        """The `<source>_rejected` value: None when kept, else `reason` or `reason: detail`."""
        return self.reason if not self.detail else f"{self.reason}: {self.detail}"


class RewriteFilter:
    """The rewrite filters as the worker applies them: `prepare(caption)` once per cleaned caption, then
    `filter(output, prepared)` per engine output, a Verdict.

    `faithfulness`: `wordnet` (the built-in tables and WordNet: a DataError where WordNet cannot be
    read, since the same rewrite id must mean the same decisions everywhere), `builtin` (the tables
    alone), `off` (no faithfulness or off-topic check), or `auto`: faithfulness_here(), what this machine
    can run (RewriteConfig.resolved_faithfulness puts the same in the rewrite id)."""

    def __init__(self, faithfulness: str = "auto"):
        if faithfulness == "auto":
            faithfulness = faithfulness_here()
        if faithfulness not in FAITHFULNESS:
            from laclip.errors import UsageError

            raise UsageError(f"invalid faithfulness {faithfulness!r}: choose {', '.join(FAITHFULNESS)}")
        self.faithfulness = faithfulness
        self.judge = None
        if faithfulness != "off":
            from laclip.rewrite.faithful import Faithfulness

            side = None
            if faithfulness == "wordnet":
                from laclip.rewrite import wordnet
                from laclip.rewrite.faithful_wordnet import WordNetSide

                wn, where = wordnet.reader()
                if wn is None:
                    from laclip.errors import DataError

                    raise DataError(f"the faithfulness check was set to use WordNet, and there is none here ({where}):"
                                    f" {wordnet.HOW}; or rewrite with faithfulness=builtin (another rewrite id)")
                side = WordNetSide(wn)
            self.judge = Faithfulness(wordnet=side)

    def prepare(self, caption_clean: str) -> Prepared:
        facts = self.judge.caption(caption_clean) if self.judge is not None else None
        return Prepared(caption_clean, normal(caption_clean), near_normal(caption_clean), facts)

    def __call__(self, output: str, prep: Prepared) -> Verdict:
        text, reason, detail = _check(output, prep.clean, prep.normal, prep.near)
        if reason is not None:
            return Verdict("", reason, detail)
        if self.judge is not None:
            found = self.judge.judge(prep.facts, text)
            if found is not None:
                return Verdict("", *found)
        return Verdict(text)


def faithfulness_here() -> str:
    """`wordnet` where laclip.rewrite.wordnet finds a WordNet, else `builtin`."""
    from laclip.rewrite import wordnet

    return "wordnet" if wordnet.reader()[0] is not None else "builtin"

"""Turn an engine's continuation into a rewrite, or say why the original caption is kept.

The continuation is cut at the first newline (the next line would be a new example).
Rejection reasons, counted per source in the shard's stats:

- `empty_input`: the caption itself is empty or blank (nothing to rewrite, no prompt sent)
- `empty`:       nothing but whitespace or quotes before the newline
- `too_short`:   fewer than 2 words (the paper's trainer drops those too); in scripts written
                 without spaces (Chinese, Japanese, Thai...) fewer than 3 such characters
- `echo`:        the input again, up to case, spacing and punctuation
- `repetition`:  runaway repetition (a word or a phrase of up to 4 words looping)
- `scaffolding`: still contains the prompt's `=>` or instruction
- `invalid`:     control characters, line separators (U+0085, U+2028, U+2029) or U+FFFD (broken
                 decoding); the input captions are cleaned of the same characters
"""

from __future__ import annotations

import re
import string

from laclip.rewrite.prompts import INSTRUCTION

REASONS = ("empty_input", "empty", "too_short", "echo", "repetition", "scaffolding", "invalid")
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
    """(rewrite, None) when the output is usable, else ("", reason). `original_normal` is
    normal(original_clean), when the caller has it already."""
    if len(output) > MAX_OUTPUT_CHARS:
        output = output[:MAX_OUTPUT_CHARS]
    text = continuation(output)
    if not text:
        return "", "empty"
    if (not text.isprintable() and _INVALID.search(text)) or "\ufffd" in text:
        return "", "invalid"
    low = text.lower()
    if "=>" in text or _INSTRUCTION_HEAD in low:
        return "", "scaffolding"
    words = low.split()
    if len(words) < 2 and len(_UNSPACED.findall(text)) < MIN_UNSPACED_CHARS:
        return "", "too_short"
    if _squash(low) == (original_normal if original_normal is not None else normal(original_clean)):
        return "", "echo"
    if _repetitive(words):
        return "", "repetition"
    return text, None

"""Turn an engine's continuation into a rewrite, or say why the original caption is kept.

The continuation is cut at the first newline (the next line would be a new example).
Rejection reasons, counted per source in the shard's stats:

- `empty_input`: the caption itself is empty or blank (nothing to rewrite, no prompt sent)
- `empty`:       nothing but whitespace or quotes before the newline
- `too_short`:   fewer than 2 words (the paper's trainer drops those too)
- `echo`:        the input again, up to case, spacing and punctuation
- `repetition`:  runaway repetition (a word or phrase looping)
- `scaffolding`: still contains the prompt's `=>` or instruction
- `invalid`:     control characters or U+FFFD (broken decoding)
"""

from __future__ import annotations

import re
import string

from laclip.rewrite.prompts import INSTRUCTION

REASONS = ("empty_input", "empty", "too_short", "echo", "repetition", "scaffolding", "invalid")
MAX_OUTPUT_CHARS = 2000  # 77 tokens never decode to more; anything longer is garbage

_INVALID = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufffd]")
_ASCII_DROP = (string.punctuation + string.whitespace).encode()
_PUNCT_TO_SPACE = str.maketrans({c: " " for c in string.punctuation + "\u2018\u2019\u201c\u201d\u2013\u2014\u2026"})
_INSTRUCTION_HEAD = INSTRUCTION[:30].lower()
_QUOTES = "\"'`"


def continuation(text: str) -> str:
    """The first line of the continuation, stripped of spaces and wrapping quotes."""
    line = text.split("\n", 1)[0].strip()
    if len(line) >= 2 and line[0] == line[-1] and line[0] in _QUOTES:
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
    """Runaway repetition: one word 4+ times in a row, or a short loop of phrases."""
    n = len(words)
    if n < 6:
        return False
    uniq = len(set(words))
    if n >= 12 and uniq <= n // 4:
        return True
    if n - uniq < 3:  # a word 4 times in a row needs at least 3 repeats
        return False
    same = list(map(str.__eq__, words, words[1:]))
    if sum(same) < 3:
        return False
    run = 0
    for s in same:
        run = run + 1 if s else 0
        if run >= 3:
            return True
    return False


def check(output: str, original_clean: str, original_normal: str | None = None) -> tuple[str, str | None]:
    """(rewrite, None) when the output is usable, else ("", reason). `original_normal` is
    normal(original_clean), when the caller has it already."""
    if len(output) > MAX_OUTPUT_CHARS:
        output = output[:MAX_OUTPUT_CHARS]
    nl = output.find("\n")
    text = (output if nl < 0 else output[:nl]).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in _QUOTES:  # as continuation(), inlined
        text = text[1:-1].strip()
    if not text:
        return "", "empty"
    if (not text.isprintable() and _INVALID.search(text)) or "\ufffd" in text:
        return "", "invalid"
    low = text.lower()
    if "=>" in text or _INSTRUCTION_HEAD in low:
        return "", "scaffolding"
    words = low.split()
    if len(words) < 2:
        return "", "too_short"
    if _squash(low) == (original_normal if original_normal is not None else normal(original_clean)):
        return "", "echo"
    if _repetitive(words):
        return "", "repetition"
    return text, None

"""Is a rewrite a description at all? The faithfulness check's `off_topic` rules (laclip.rewrite.faithful).

A language model asked to continue `caption =>` sometimes answers as a chatbot ("Here's a revised
version", "Sure!"), talks about the text (caption, sentence, rewrite, wording), speaks in the first or
second person, defines a word ("A hexagon is a polygon with six sides"), asks a question, gives an
instruction ("Draw a red star"), continues the prompt's own format (`a = b`, `a -> b`, a label
ending in a colon) or comments ("The image is a beautiful example of..."). A word the caption itself
uses is never held against the rewrite (a caption may say "my dog" or "text").
"""

from __future__ import annotations

import re

ARTICLES = frozenset("a an the".split())
_DEFINING = frozenset("a an the one any used defined known called typically usually often generally commonly "
                      "considered referred simply basically essentially formed made composed shaped".split())
_NOT_SUBJECT = frozenset("this that it there here these those what which who they he she".split())
_DEFINITION_VERB = re.compile(r"\b(?:refers? to|referred to as|is defined as|known as|is called|stands for|"
                              r"means that|is a type of|is a kind of|is a word|symboli[sz]es|represents|made up of|"
                              r"used (?:in|for|to))\b")
# commentary about the picture rather than a description of it
_COMMENT = re.compile(r"\b(?:is|are) (?:a|an) (?:\w+ )?(?:example|reminder|testament|symbol|metaphor|"
                      r"representation|sign|celebration|tribute)\b")
_TRIGGERS = frozenset("refer refers referred defined known called stands means type kind word symbolises symbolizes "
                      "represents made used "
                      "is are".split())  # a word either pattern needs: without one, no regex runs
_FORMAT = re.compile(r"(?:^|\s)(?:=|->|<-|→|::)(?:\s|$)")


def off_topic(lex, caption_words: frozenset[str], caption_text: str, text: str, toks: list[str]) -> str | None:
    """Why `text` (tokens `toks`) is no description of the image `caption_text` describes, or None."""
    chat = lex.chatter
    first = toks[0]
    if first in chat["start"] and first not in caption_words:
        return f"starts like a reply: '{first}'"
    for t in toks:
        if t in chat["meta"] and t not in caption_words:
            return f"talks about the text: '{t}'"
        if t in chat["pronoun"] and t not in caption_words:
            return f"speaks in the first or second person: '{t}'"
    if first in chat["imperative"] and first not in caption_words:
        return f"an instruction: '{first}'"
    stripped = text.rstrip()
    if stripped.endswith("?"):
        return "a question"
    if stripped.endswith(":"):
        return "a label with nothing after it"
    m = _FORMAT.search(text) if ("=" in text or "->" in text or "<-" in text or "→" in text or "::" in text) else None
    if m and not _FORMAT.search(caption_text):
        return f"continues the prompt's format: '{m.group(0).strip()}'"
    found = _definition(lex, toks)
    if found:
        return f"a definition: '{found}'"
    if not _TRIGGERS.intersection(toks):
        return None
    low = " ".join(toks)
    m = _DEFINITION_VERB.search(low) or _COMMENT.search(low)
    if m and m.group(0).split()[-1] not in caption_words:
        return f"a definition or a comment: '{m.group(0)}'"
    return None


def _definition(lex, toks: list[str]) -> str | None:
    """'A hexagon is a six-sided polygon', '... a triangle is formed by': at the start or after an article,
    a subject of one or two words (not `this`, `there`, nor a framing noun such as `image`), `is` or `are`,
    then a defining word."""
    for start, w in enumerate(toks):
        if start and w not in ARTICLES:
            continue
        i = start + 1 if w in ARTICLES else start
        for j in (i + 1, i + 2):
            if j + 1 < len(toks) and toks[j] in ("is", "are") and toks[j + 1] in _DEFINING:
                subject = toks[i:j]
                if not (subject[0] in _NOT_SUBJECT or subject[-1] in lex.generic or subject[-1] in _NOT_SUBJECT):
                    return " ".join(toks[start:j + 2])
    return None

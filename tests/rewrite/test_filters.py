"""Output parsing and rejection reasons."""

import pytest

from laclip.rewrite.filters import check, continuation
from laclip.rewrite.prompts import INSTRUCTION

ORIG = "a red dog on the beach"


@pytest.mark.parametrize("output, reason", [
    (" a crimson dog runs along the sand\nnext => example", None),
    ('  "a crimson dog on the sand"  \n', None),
    ("", "empty"),
    ("   \n a dog on sand", "empty"),
    ('""', "empty"),
    (" dog\n", "too_short"),
    (" A red dog on the beach.\n", "echo"),
    (" a RED dog,  on the beach!", "echo"),
    (" dog dog dog dog on the beach", "repetition"),
    (" the beach the sun the beach the sun the beach the sun the beach the sun", "repetition"),
    (" a dog => a cat on a mat", "scaffolding"),
    (f" {INSTRUCTION} a dog", "scaffolding"),
    (" a dog \x00 on sand", "invalid"),
    (" a dog \ufffd on sand", "invalid"),
    (" 🐶 🌊", None),
    (" 一只 红色的狗", None),
    (" 一只红色的狗在海滩上", None),  # no spaces: counted by characters
    (" สุนัขสีแดงบนชายหาด", None),
    (" 狗", "too_short"),
    (" a dog a dog a dog a dog a dog", "repetition"),
    (" a dog a dog a dog a dog running along the sandy beach", "repetition"),
    (" a dog and a dog and a cat on the sand", None),
    (" a red fox\u2028runs on the sand", "invalid"),  # clean_caption removes these from inputs
    (" a red fox\x85runs on the sand", "invalid"),
])
def test_reasons(output, reason):
    text, why = check(output, ORIG)
    assert why == reason
    assert (text != "") == (reason is None)
    if reason is None:
        assert "\n" not in text and text == text.strip()


def test_continuation_takes_the_first_line_only():
    assert continuation(" one two\nthree => four\n") == "one two"
    assert continuation("'quoted words'") == "quoted words"
    # Quotes that open and close inner phrases are not a pair around the line: kept as written.
    assert continuation(' "A dog" and "a cat" ') == '"A dog" and "a cat"'


def test_huge_output_is_bounded():
    text, why = check("word " * 100_000, ORIG)
    assert why == "repetition"

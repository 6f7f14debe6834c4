"""In-context prompts: an instruction line, 3 example pairs `source => target`, the caption, ` =>`.

Meta pairs come from one of the sources shipped in `metapairs/<source>.txt` (16 pairs each,
`source => target` per line, `#` comments) or from the user's own files.

For each (caption, source) the 3 pairs are drawn from a hash of (dataset, shard, key,
source, seed), so a retried pod builds byte-identical prompts, independent of Python's
`random` implementation and of the order in which captions are processed.

Prefix reuse (vLLM's prefix cache works on whole 16-token blocks): the 3 drawn pairs are
put in ascending index order, so a prompt is fixed by a combination (560 for 16 pairs)
rather than a permutation (3,360), and prompts that share the first pair share the
instruction plus that pair's blocks. The worker sorts each shard's prompts by (source,
pairs) so prompts with identical prefixes are adjacent and reach the scheduler together,
while their blocks are still cached.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

from laclip.errors import DataError, UsageError

PROMPT_FORMAT_VERSION = 1
INSTRUCTION = "Rewrite each image caption in new words, keeping what it says:"
SEP = " => "
PAIRS_PER_PROMPT = 3
MIN_PAIRS = PAIRS_PER_PROMPT

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def parse_meta_pairs(text: str, where: str) -> list[tuple[str, str]]:
    """Pairs of a meta-pair file; a line that is not `source => target` is an error naming it."""
    pairs = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        src, sep, tgt = line.partition(SEP)
        src, tgt = src.strip(), tgt.strip()
        if not sep or not src or not tgt or SEP.strip() in tgt or SEP.strip() in src:
            raise DataError(f"{where} line {n}: expected one `source => target` pair, got {line[:80]!r}")
        if _CONTROL.search(line):
            raise DataError(f"{where} line {n}: control characters are not allowed in meta pairs")
        pairs.append((src, tgt))
    if len(pairs) < MIN_PAIRS:
        raise DataError(f"{where} holds {len(pairs)} pairs; a prompt needs at least {MIN_PAIRS}")
    if len(set(pairs)) != len(pairs):
        raise DataError(f"{where} repeats a pair; pairs must be distinct")
    return pairs


@lru_cache(maxsize=None)
def builtin_meta_pairs(source: str) -> tuple[tuple[str, str], ...]:
    ref = resources.files("laclip.rewrite").joinpath("metapairs", f"{source}.txt")
    try:
        text = ref.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"no built-in meta-pair source {source!r}") from None
    return tuple(parse_meta_pairs(text, f"built-in meta pairs {source!r}"))


def read_meta_pairs_file(path: str | Path) -> list[tuple[str, str]]:
    """A user's `--meta-pairs SOURCE=PATH` file."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"meta-pair file {p} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"meta-pair file {p} is a folder: give the pairs file in it") from None
    except UnicodeDecodeError:
        raise DataError(f"meta-pair file {p} is not UTF-8 text") from None
    except OSError as exc:  # permission denied, an I/O error
        raise UsageError(f"cannot read meta-pair file {p}: {exc.strerror or exc}") from None
    return parse_meta_pairs(text, f"meta-pair file {p}")


def load_meta_pairs(sources: list[str], overrides: dict[str, list] | None = None) -> dict[str, list[tuple[str, str]]]:
    """The pairs of every requested source: the user's where given, else the built-in ones."""
    overrides = overrides or {}
    out = {}
    for s in sources:
        if s in overrides:
            out[s] = [tuple(p) for p in overrides[s]]
        else:
            out[s] = list(builtin_meta_pairs(s))
    return out


def clean_caption(text: str, max_words: int, max_chars: int) -> str:
    """One line the prompt can hold: no control characters or newlines, no `=>` (it would read
    as scaffolding), whitespace collapsed, cut at a word boundary to the budget."""
    if _CONTROL.search(text):
        text = _CONTROL.sub(" ", text)
    if "=>" in text:
        text = text.replace("=>", "->")
    words = text.split()
    if len(words) > max_words:
        words = words[:max_words]
    text = " ".join(words)
    if len(text) > max_chars:
        cut = text.rfind(" ", 0, max_chars + 1)
        text = text[:cut] if cut > max_chars // 2 else text[:max_chars]  # no spaces (e.g. CJK): hard cut
    return text


def request_hash(dataset: str, shard: str, key: str, source: str, seed: int) -> int:
    """64 bits fixed by (dataset, shard, key, source, seed): draws the pairs and seeds sampling."""
    h = hashlib.blake2b(f"{dataset}\x00{shard}\x00{source}\x00{seed}\x00".encode(), digest_size=8)
    h.update(key.encode("utf-8", "surrogatepass"))
    return int.from_bytes(h.digest(), "little")


@lru_cache(maxsize=64)
def _combo_table(n_pairs: int) -> tuple[tuple[int, ...], ...]:
    """Every ordered draw of 3 distinct indices, stored sorted: h % len picks one uniformly."""
    from itertools import permutations

    return tuple(tuple(sorted(p)) for p in permutations(range(n_pairs), PAIRS_PER_PROMPT))


def draw_pairs(n_pairs: int, h: int) -> tuple[int, ...]:
    """3 distinct pair indices in ascending order, uniformly drawn by the hash."""
    table = _combo_table(n_pairs)
    return table[h % len(table)]


class PromptBuilder:
    """Builds prompts fast: the prefix (instruction + 3 pairs) is cached per (source, pairs), and
    the hash state of (dataset, shard, source, seed) is computed once per shard and source."""

    def __init__(self, pairs: dict[str, list[tuple[str, str]]], dataset: str, seed: int):
        self.pairs = pairs
        self.dataset = dataset
        self.seed = seed
        self._prefix: dict[tuple[str, tuple[int, ...]], tuple[str, int]] = {}
        self._tables = {s: _combo_table(len(p)) for s, p in pairs.items()}

    def prefix(self, source: str, combo: tuple[int, ...]) -> tuple[str, int]:
        """(prefix text, sort id). Sorting by the id orders prompts by source, then pairs
        lexicographically: identical prefixes are adjacent, and so are those sharing leading pairs."""
        k = (source, combo)
        p = self._prefix.get(k)
        if p is None:
            pairs = self.pairs[source]
            lines = [INSTRUCTION] + [f"{pairs[i][0]}{SEP}{pairs[i][1]}" for i in combo]
            sort_id = list(self.pairs).index(source)
            for i in combo:
                sort_id = sort_id * 4096 + i
            p = self._prefix[k] = ("\n".join(lines) + "\n", sort_id)
        return p

    def for_shard(self, shard: str, source: str):
        """A fast builder for one (shard, source): key, caption -> (prompt, prefix id, hash)."""
        base = hashlib.blake2b(f"{self.dataset}\x00{shard}\x00{source}\x00{self.seed}\x00".encode(), digest_size=8)
        table = self._tables[source]
        size = len(table)
        cache = {}
        prefix = self.prefix

        def build(key: str, caption: str) -> tuple[str, int, int]:
            h = base.copy()
            h.update(key.encode("utf-8", "surrogatepass"))
            hv = int.from_bytes(h.digest(), "little")
            combo = table[hv % size]
            pre = cache.get(combo)
            if pre is None:
                pre = cache[combo] = prefix(source, combo)
            return pre[0] + caption + " =>", pre[1], hv

        return build

    def build(self, shard: str, key: str, source: str, caption: str) -> tuple[str, tuple[int, ...], int]:
        """(prompt, pair indices, request hash) for one caption and source."""
        h = request_hash(self.dataset, shard, key, source, self.seed)
        combo = draw_pairs(len(self.pairs[source]), h)
        return self.prefix(source, combo)[0] + caption + " =>", combo, h

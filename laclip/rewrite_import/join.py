"""The join of a dataset's captions with the release's, in arrays (pyarrow and numpy), never a
Python dict of captions: at CC12M size (12 M release rows, 8 M or so downloaded samples) it holds
16-24 bytes per row, and the texts themselves only in bounded chunks.

- `normalize`: Unicode NFC, white space trimmed and every run of (Unicode) white space made one
  space: what an img2dataset download and a CSV made from the same list can differ in.
- `text_hash`: a 64-bit hash of each string, vectorised over Arrow's buffers (a polynomial hash
  modulo 2^64 with a mixing finaliser). A collision can pair a sample with another caption's
  rows; the writer compares the normalised texts of every pair it writes, so a collision is
  counted (`collisions`) and the sample keeps its caption, never trains on a wrong rewrite.
- `assign`: for each sample the release row it takes. Release rows of one caption are candidates
  in line order; with `spread` the i-th sample (in shard and row order) with that caption takes
  candidate i mod m, with `first` every one takes candidate 0. Deterministic either way. A
  sample is *ambiguous* when its caption has candidates whose rewrites differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_BASE = np.uint64(0x100000001B3)  # odd: invertible modulo 2^64
_INV = np.uint64(pow(int(_BASE), -1, 2**64))
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SLICE_BYTES = 1 << 21  # text bytes hashed at once: bounds the uint64 temporaries to ~50 MiB
_TABLES: list[np.ndarray] = []  # BASE**i and BASE**-i for i < _SLICE_BYTES (+1), made on first use
_SPACE = pa.scalar(" ", pa.string())


def normalize(values) -> pa.Array:
    """Captions as both sides are compared: NFC, trimmed, white space runs made one space.
    Rows of plain ASCII with single spaces and no control characters (most captions) are only
    trimmed; the others go through Unicode normalisation and splitting (slower, per row)."""
    arr = values if isinstance(values, pa.Array) else pa.array(values, pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type != pa.string():
        arr = arr.cast(pa.string())
    trimmed = pc.utf8_trim_whitespace(arr)
    messy = _messy(trimmed)
    if not messy.any():
        return trimmed
    idx = pa.array(np.flatnonzero(messy))
    fixed = pc.binary_join(pc.utf8_split_whitespace(pc.utf8_normalize(trimmed.take(idx), "NFC")), _SPACE)
    return pc.replace_with_mask(trimmed, pa.array(messy), fixed)


def _messy(arr: pa.Array) -> np.ndarray:
    """Rows holding a byte outside printable ASCII or two spaces in a row (bool per row)."""
    n = len(arr)
    if n == 0 or arr.buffers()[2] is None:
        return np.zeros(n, bool)
    offsets = np.frombuffer(arr.buffers()[1], np.int32, n + 1, arr.offset * 4).astype(np.int64)
    data = np.frombuffer(arr.buffers()[2], np.uint8)[offsets[0]:offsets[-1]]
    offsets -= offsets[0]
    if len(data) == 0:
        return np.zeros(n, bool)
    bad = (data < 0x20) | (data >= 0x7F)
    bad[:-1] |= (data[:-1] == 0x20) & (data[1:] == 0x20)
    out = np.zeros(n, bool)
    out[np.searchsorted(offsets, np.flatnonzero(bad), side="right") - 1] = True  # bad bytes are rare
    return out


def _mix(h: np.ndarray) -> np.ndarray:
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


def _powers(base: np.uint64, exponents: np.ndarray) -> np.ndarray:
    """base ** exponents modulo 2^64, element-wise (square and multiply)."""
    out = np.ones(len(exponents), np.uint64)
    e = exponents.astype(np.uint64)
    b = np.full(len(exponents), base, np.uint64)
    while e.any():
        odd = (e & np.uint64(1)).astype(bool)
        out[odd] *= b[odd]
        b *= b
        e >>= np.uint64(1)
    return out


def _tables() -> tuple[np.ndarray, np.ndarray]:
    if not _TABLES:
        with np.errstate(over="ignore"):
            pw = np.full(_SLICE_BYTES + 1, _BASE, np.uint64)
            pw[0] = 1
            ipw = np.full(_SLICE_BYTES + 1, _INV, np.uint64)
            ipw[0] = 1
            _TABLES.extend([np.cumprod(pw), np.cumprod(ipw)])
    return _TABLES[0], _TABLES[1]


def text_hash(values: pa.Array) -> np.ndarray:
    """A uint64 per string (null hashes as the empty string)."""
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if arr.type != pa.large_string():
        arr = arr.cast(pa.large_string())
    n = len(arr)
    out = np.empty(n, np.uint64)
    if n == 0:
        return out
    offsets = np.frombuffer(arr.buffers()[1], np.int64, n + 1, arr.offset * 8)
    data_buf = arr.buffers()[2]
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    pw_all, ipw_all = _tables()
    i = 0
    with np.errstate(over="ignore"):
        while i < n:
            j = int(np.searchsorted(offsets, offsets[i] + _SLICE_BYTES, side="right")) - 1
            j = min(max(j, i + 1), n)
            lo, hi = int(offsets[i]), int(offsets[j])
            size = hi - lo
            pw = pw_all[:size] if size <= _SLICE_BYTES else _powers(_BASE, np.arange(size))  # one long string
            prefix = np.zeros(size + 1, np.uint64)
            terms = data[lo:hi].astype(np.uint64)
            terms += np.uint64(1)
            terms *= pw
            np.cumsum(terms, out=prefix[1:])
            starts = offsets[i:j] - lo
            inv = ipw_all[starts] if size <= _SLICE_BYTES else _powers(_INV, starts)
            h = (prefix[offsets[i + 1:j + 1] - lo] - prefix[starts]) * inv
            h ^= lengths[i:j].astype(np.uint64) * _GOLDEN
            out[i:j] = _mix(h)
            i = j
    return out


def combine(hashes: list[np.ndarray]) -> np.ndarray:
    """One uint64 per row from several columns' hashes (order matters)."""
    out = np.zeros(len(hashes[0]), np.uint64)
    with np.errstate(over="ignore"):
        for h in hashes:
            out = _mix(out * _BASE + h + _GOLDEN)
    return out


def member(sorted_keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """values found in the sorted array sorted_keys (bool mask)."""
    if len(sorted_keys) == 0:
        return np.zeros(len(values), bool)
    idx = np.searchsorted(sorted_keys, values)
    idx[idx == len(sorted_keys)] = 0
    return sorted_keys[idx] == values


@dataclass
class Assignment:
    """Per sample (in the order given): the candidate it takes (-1: none) and whether it was ambiguous;
    per candidate: how many samples took it."""

    choice: np.ndarray  # int64, index into the candidates
    ambiguous: np.ndarray  # bool
    candidates_per_caption: np.ndarray  # int64: how many release rows share the sample's caption (0: missing)


def assign(sample_hash: np.ndarray, cand_hash: np.ndarray, cand_rewrites: np.ndarray, choose: str) -> Assignment:
    """Pick a candidate (release row, in line order) for every sample. `sample_hash` is in sample
    order (shard, row); `cand_hash` and `cand_rewrites` (the hash of a row's rewrites) in line order."""
    n = len(sample_hash)
    choice = np.full(n, -1, np.int64)
    ambiguous = np.zeros(n, bool)
    per_caption = np.zeros(n, np.int64)
    if n == 0 or len(cand_hash) == 0:
        return Assignment(choice, ambiguous, per_caption)
    order = np.argsort(cand_hash, kind="stable")  # by caption, then line
    keys = cand_hash[order]
    first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    group_keys = keys[first]
    sizes = np.diff(np.r_[first, len(keys)])
    # distinct rewrite tuples per caption group
    by_rw = np.lexsort((cand_rewrites, cand_hash))
    kh, kr = cand_hash[by_rw], cand_rewrites[by_rw]
    new_pair = np.r_[True, (kh[1:] != kh[:-1]) | (kr[1:] != kr[:-1])]
    distinct = np.add.reduceat(new_pair.astype(np.int64), np.flatnonzero(np.r_[True, kh[1:] != kh[:-1]]))

    s_order = np.argsort(sample_hash, kind="stable")  # by caption, then sample order
    s_keys = sample_hash[s_order]
    s_first = np.flatnonzero(np.r_[True, s_keys[1:] != s_keys[:-1]])
    rank = np.arange(n) - np.repeat(s_first, np.diff(np.r_[s_first, n]))
    g = np.searchsorted(group_keys, s_keys)
    g[g == len(group_keys)] = 0
    found = group_keys[g] == s_keys
    gi = g[found]
    pick = first[gi] + (rank[found] % sizes[gi] if choose == "spread" else 0)
    targets = s_order[found]
    choice[targets] = order[pick]
    ambiguous[targets] = distinct[gi] > 1
    per_caption[targets] = sizes[gi]
    return Assignment(choice, ambiguous, per_caption)

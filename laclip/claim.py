"""Claiming work: is a unit done, who made it, and from what. Every stage's pods and every `--local`
run use these, in the manner of datatrove's executor-level completion markers:

    completion_index() / units_of_index()   which units this pod owns ($JOB_COMPLETION_INDEX, parsed here only)
    pending_indexes()                       the indexes that still have work (what `--local` starts)
    write_once()                            a unit's output, create-only: exactly one of racing writers wins
    claim()                                 an output folder's record: written once, then every later run must
                                            bring the same identity (else one line naming what changed)
    read_record()                           any JSON record read back, validated: a damaged one is one line
                                            naming the file and what is wrong, never a traceback

A record's identity is the digest-able dict of everything that decides the output (settings, and the
content of inputs: laclip.identity). Comparing identities is how an output is reused only when what made
it is provably the same; `changes()` says what differs, in the words of the fields.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Iterable, Sequence, TypeVar

from laclip.errors import AlreadyExists, DataError, NotFound, UsageError
from laclip.identity import canonical
from laclip.storage.base import Store

INDEX_ENV = "JOB_COMPLETION_INDEX"
T = TypeVar("T")


# -- which units are this pod's ---------------------------------------------------------------
def completion_index(required: bool = False) -> int | None:
    """The completion index Kubernetes gives an Indexed Job's pod; None outside one (unless required)."""
    raw = os.environ.get(INDEX_ENV)
    if raw is None:
        if required:
            raise UsageError(f"no completion index: set {INDEX_ENV} (Kubernetes sets it in an Indexed Job)")
        return None
    try:
        index = int(raw.strip())
    except ValueError:
        index = -1
    if index < 0:
        raise UsageError(f"{INDEX_ENV} must be a whole number >= 0, not {raw!r}")
    return index


def units_of_index(units: Sequence[T], index: int | None, per_index: int = 1, what: str = "units") -> list[T]:
    """Units index*per_index .. +per_index-1 (all of them without an index). An index past the end is a
    usage error: the Job was rendered for other units than this pod sees."""
    if index is None:
        return list(units)
    mine = list(units[index * per_index:(index + 1) * per_index])
    if not mine:
        raise UsageError(f"{INDEX_ENV}={index} names none of the {len(units)} {what}")
    return mine


def index_count(units: int, per_index: int = 1) -> int:
    return -(-units // per_index)


def pending_indexes(units: Sequence[T], done: Callable[[T], bool], per_index: int = 1) -> list[int]:
    """The indexes of an Indexed Job over `units` with at least one unit not done."""
    return [i for i in range(index_count(len(units), per_index))
            if not all(done(u) for u in units[i * per_index:(i + 1) * per_index])]


# -- outputs and records ----------------------------------------------------------------------
def write_once(store: Store, path: str, data: bytes | str) -> bool:
    """Create-only: False when another attempt published it first (that one stands)."""
    try:
        if isinstance(data, str):
            store.write_text(path, data, create_only=True)
        else:
            store.write_bytes(path, data, create_only=True)
        return True
    except AlreadyExists:
        return False


def dump(record: dict) -> str:
    return json.dumps(record, indent=2, ensure_ascii=False) + "\n"


def read_record(store: Store, path: str, fix: str = "delete it to make it again") -> dict | None:
    """A JSON object written by laclip; None when absent. A damaged one (not UTF-8, not JSON, not an
    object) is a DataError naming the file, what is wrong with it and `fix`."""
    try:
        data = store.read_bytes(path)
    except NotFound:
        return None
    where = store.url_of(path)
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise DataError(f"{where} is damaged: not UTF-8 text; {fix}") from None
    except ValueError as exc:
        why = f"{exc.msg} at line {exc.lineno}" if hasattr(exc, "msg") else str(exc)
        what = "empty" if not data.strip() else f"not JSON ({why})"
        raise DataError(f"{where} is damaged: {what}; {fix}") from None
    if not isinstance(value, dict):
        raise DataError(f"{where} is damaged: it holds a JSON {type(value).__name__}, not a record; {fix}")
    return value


def changes(before, now, prefix: str = "") -> list[str]:
    """What differs between two identities, as `field: old -> new` (nested fields dotted)."""
    if isinstance(before, dict) and isinstance(now, dict):
        found = []
        for key in sorted(set(before) | set(now), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in before:
                found.append(f"{name}: not recorded -> {_short(now[key])}")
            elif key not in now:
                found.append(f"{name}: {_short(before[key])} -> not given")
            else:
                found += changes(before[key], now[key], name)
        return found
    if canonical(before) == canonical(now):
        return []
    return [f"{prefix or 'identity'}: {_short(before)} -> {_short(now)}"]


def _short(value) -> str:
    text = canonical(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:28] + "..." + text[-28:]


def same(before, now) -> bool:
    return canonical(before) == canonical(now)


def claim(store: Store, path: str, record: dict, *, key: str | Callable[[dict], object], what: str, fresh: str,
          error: type[Exception] = UsageError) -> dict:
    """Write `record` create-only as the record of an output; when one is there already, its identity
    (the field `key`, or what `key(record)` reads from it) must equal ours, else `error` with one line:
    `<record> records <what> (<what changed>): <fresh>` (`fresh`: how to start afresh). Returns the record
    that stands."""
    if write_once(store, path, dump(record)):
        return record
    theirs = read_record(store, path, f"delete the folder it describes to make it again, or {fresh}")
    if theirs is None:  # deleted between our write and our read: ours goes in now
        return claim(store, path, record, key=key, what=what, fresh=fresh, error=error)
    identity = key if callable(key) else (lambda r: r.get(key))
    diff = changes(identity(theirs), identity(record))
    if diff:
        raise error(f"{store.url_of(path)} records {what} ({summary(diff)}): {fresh}")
    return theirs


def summary(diff: list[str], at_most: int = 3) -> str:
    more = f" and {len(diff) - at_most} more" if len(diff) > at_most else ""
    return "; ".join(diff[:at_most]) + more


def row_changes(before: Iterable[tuple[str, str]], now: Iterable[tuple[str, str]]) -> tuple[int, int, int]:
    """(captions changed, keys added, keys removed) between two sets of (key, caption) rows. Order is
    not content: the same rows in another order are (0, 0, 0)."""
    old, new = dict(before), dict(now)
    changed = sum(1 for k, c in new.items() if k in old and old[k] != c)
    return changed, len(new.keys() - old.keys()), len(old.keys() - new.keys())

"""Reading eval result files back: each is checked before a number from it is shown, reused or paired;
a damaged one is one DataError naming the file and what is wrong.

The unit rule: metrics are fractions in [0, 1], as CLIP_benchmark writes them (acc1 0.9 is 90 %), and
tables show percent. A rate (a metric whose name holds `acc` or `recall`) outside [0, 1] (a percentage
typed by hand, say) and any metric that is not a number (`true`, `"0.9"`) is refused, never rescaled
or coerced. No torch here.
"""

from __future__ import annotations

import json
import math
import re

from laclip.errors import DataError, NotFound

RATE = re.compile(r"acc|recall")


def read_json(store, path: str, what: str = "result") -> dict:
    """A JSON object from the store; NotFound passes through, anything else unreadable is a DataError."""
    where = store.url_of(path)
    try:
        value = json.loads(store.read_text(path))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{what} {where} is not JSON (truncated or damaged: {' '.join(str(exc).split())[:120]}): "
                        "delete it and evaluate again") from None
    if not isinstance(value, dict):
        raise DataError(f"{what} {where} holds a JSON {type(value).__name__}, not an object: delete it and evaluate "
                        "again")
    return value


def check_result(record: dict, where: str, task: str | None = None) -> dict:
    """`record` if it is a result as laclip writes it (CLIP_benchmark's shape); else a DataError."""
    def bad(why: str):
        return DataError(f"result {where}: {why}: delete it and evaluate again")

    for key in ("dataset", "task"):
        if not isinstance(record.get(key), str):
            raise bad(f"{key!r} is {_shown(record.get(key))}, not text")
    if task is not None and record["task"] != task:
        raise bad(f"it says task {record['task']!r} but its file name says {task!r}")
    metrics = record.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise bad(f"'metrics' is {_shown(metrics)}, not an object of metrics")
    for name, value in metrics.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad(f"metric {name!r} is {_shown(value)}, not a number")
        if RATE.search(name) and not 0 <= value <= 1:
            raise bad(f"metric {name!r} is {value:g}, outside [0, 1] (metrics are fractions, as CLIP_benchmark "
                      "writes them: 0.9 is 90 %)")
    info = record.get("laclip", {})
    if not isinstance(info, dict) or not isinstance(info.get("created", ""), str) \
            or not isinstance(info.get("identity", {}), dict):
        raise bad("its 'laclip' details are not as laclip writes them")
    return record


def read_result(store, path: str, task: str | None = None) -> dict:
    return check_result(read_json(store, path), store.url_of(path), task)


def read_eval_record(store, path: str) -> dict | None:
    """The config record of an evaluation folder (evals/<run>/<checkpoint>/), None where there is none."""
    try:
        record = read_json(store, path, "evaluation record")
    except NotFound:
        return None
    if not isinstance(record.get("config"), dict):
        raise DataError(f"evaluation record {store.url_of(path)} holds no config: delete it and evaluate again")
    return record


def _shown(value) -> str:
    text = json.dumps(value)
    return "missing" if value is None else text if len(text) <= 40 else text[:37] + "..."

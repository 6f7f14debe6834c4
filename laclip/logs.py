"""One logging set-up for every entrypoint: JSON lines in pods (LACLIP_LOG_FORMAT=json, the shape
Cloud Logging parses: severity, message, component, fields), plain lines on a terminal.

    log = setup("rewrite")                 # once, in the entrypoint
    event(log, "shard-done", shard="00003", captions=512)
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time


class _Json(logging.Formatter):
    def __init__(self, component: str, rank: int | None):
        super().__init__()
        self.component, self.rank = component, rank

    def format(self, record: logging.LogRecord) -> str:
        entry = {"severity": record.levelname, "message": record.getMessage(), "component": self.component,
                 "logger": record.name, "time": round(time.time(), 3)}
        if self.rank is not None:
            entry["rank"] = self.rank
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry, default=str)


class _Plain(logging.Formatter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {}) if record.levelno <= logging.INFO else {}
        extra = "".join(f" {k}={v}" for k, v in fields.items())
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return f"{self.prefix} {level}{record.getMessage()}{extra}"


def setup(component: str, rank: int | None = None) -> logging.Logger:
    """Route the `laclip` loggers to stderr, once per process (again after a test replaced stderr)."""
    root = logging.getLogger("laclip")
    for old in list(root.handlers):
        root.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("LACLIP_LOG_FORMAT") == "json":
        handler.setFormatter(_Json(component, rank))
    else:
        handler.setFormatter(_Plain(f"[{component}]" if rank is None else f"[{component} rank {rank}]"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False
    return logging.getLogger(f"laclip.{component}")


def event(log: logging.Logger, name: str, level: int = logging.INFO, **fields) -> None:
    """A named event with fields: separate JSON keys in pods, `k=v` locally."""
    log.log(level, name, extra={"fields": fields})

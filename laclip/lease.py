"""One owner per training run: a lease in the store that a second live trainer cannot take.

    leases/<run>/<seq>.json    who took the lease (owner token, host, pid, time); create-only,
                               so of two processes racing for sequence number N exactly one wins
    leases/<run>/<seq>.alive   refreshed by that owner while it runs; {"released": true} at a clean end

The newest sequence number is the lease. It may be taken (the next number created) by its own
owner (the same submission restarting: every pod and every torchrun restart of one `laclip
submit` carries the same LACLIP_RUN_OWNER token), once it is released, once it has not been
refreshed for `timeout_s`, or at once when its holder was a process of this host that is gone.
Any other start is refused with a message naming the holder. Only create-only writes and the
owner's own overwrites are needed, so it works alike on a folder and on gs://.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import re
import socket
import threading
import time

from laclip import claim, layout
from laclip.errors import AlreadyExists, DataError, LaclipError, LeaseHeld, NotFound
from laclip.storage.base import Store, join

OWNER_ENV = "LACLIP_RUN_OWNER"
SEQ_RE = re.compile(r"^(\d{8})\.json$")
log = logging.getLogger("laclip.lease")


def owner_token() -> str:
    """This process's owner token: the submission's (env), else one for this process alone."""
    return os.environ.get(OWNER_ENV) or f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}"


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Lease:
    def __init__(self, store: Store, run: str, owner: str, timeout_s: float):
        self.store, self.run, self.owner, self.timeout_s = store, run, owner, timeout_s
        self.folder = layout.lease_folder(run)
        self.seq: int | None = None
        self.lost: str | None = None  # why the lease was lost while running (set by refresh)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the files -------------------------------------------------------------------------
    def _path(self, seq: int, ext: str) -> str:
        return join(self.folder, f"{seq:08d}.{ext}")

    def _seqs(self) -> list[int]:
        prefix = self.folder + "/"
        return sorted(int(m.group(1)) for p in self.store.list(prefix)
                      if (m := SEQ_RE.fullmatch(p[len(prefix):])))

    def _read(self, path: str) -> dict | None:
        """A lease file; a damaged one (not a JSON object) reads as {} and is named by _free."""
        try:
            return claim.read_record(self.store, path)
        except DataError as exc:
            log.warning("%s", exc)
            return {}

    def holder(self) -> tuple[int, dict, dict | None] | None:
        """(seq, record, alive) of the newest lease, or None."""
        seqs = self._seqs()
        if not seqs:
            return None
        top = seqs[-1]
        return top, self._read(self._path(top, "json")) or {}, self._read(self._path(top, "alive"))

    # -- taking it -------------------------------------------------------------------------
    def _free(self, record: dict, alive: dict | None, seq: int | None = None) -> tuple[bool, str]:
        """(may this process take it, why) for the newest lease. A refresh time that cannot be read (no
        number, NaN, a day-long future) cannot show its holder alive: stale, and the reason says so."""
        if record.get("owner") == self.owner:
            return True, "own"
        if alive and alive.get("released") is True:
            return True, "released"
        field, seen = ("refreshed", (alive or {}).get("refreshed")) if (alive or {}).get("refreshed") is not None \
            else ("time", record.get("time"))
        bad = _unreadable_time(seen)
        if bad:
            ext = "alive" if field == "refreshed" else "json"
            where = "" if seq is None else f" in {self.store.url_of(self._path(seq, ext))}"
            return True, f"its {field} time {seen!r} {bad}{where}: treated as stale"
        age = max(0.0, time.time() - float(seen))  # a clock a little ahead of ours: just now
        if age > self.timeout_s:
            return True, f"not refreshed for {age:.0f}s"
        pid = record.get("pid")
        if record.get("host") == socket.gethostname() and type(pid) is int and pid > 0 and _pid_gone(pid):
            return True, f"process {record['pid']} on this host is gone"
        return False, f"alive {age:.0f}s ago"

    def _refuse_if_held(self, found) -> str:
        """Why the newest lease may be taken; LeaseHeld naming its live holder when it may not."""
        ok, why = self._free(found[1], found[2], found[0])
        if not ok:
            raise LeaseHeld(f"run {self.run!r} is being trained by {describe(found[1])} ({why}; "
                            f"lease {self.store.url_of(self._path(found[0], 'json'))}): wait for it to end, "
                            f"cancel it, or pick another run id; a lease not refreshed for "
                            f"{self.timeout_s:.0f}s is taken over")
        return why

    def check_free(self) -> None:
        """Raise LeaseHeld when another live process holds the run (what acquire would say), taking nothing:
        a start checks this before anything else, since a run being trained now is the first thing to know."""
        found = self.holder()
        if found is not None:
            self._refuse_if_held(found)

    def acquire(self) -> "Lease":
        for _ in range(20):
            found = self.holder()
            seq = 0 if found is None else found[0] + 1
            if found is not None:
                why = self._refuse_if_held(found)
            record = {"owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(), "time": time.time(),
                      "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "run": self.run}
            try:
                self.store.write_text(self._path(seq, "json"), json.dumps(record) + "\n", create_only=True)
            except AlreadyExists:
                continue  # another process took this number first: look again
            self.seq = seq
            if found is not None and why not in ("own", "released"):
                log.warning("took over run %r from %s (%s)", self.run, describe(found[1]), why)
            self._write_alive()
            for old in range(max(0, seq - 8), seq):  # keep a short history, drop the rest
                for ext in ("json", "alive"):
                    try:
                        self.store.delete(self._path(old, ext))
                    except NotFound:
                        pass
            return self
        raise LeaseHeld(f"could not take the lease of run {self.run!r}: other processes keep taking it")

    def _write_alive(self, **extra) -> None:
        self.store.write_text(self._path(self.seq, "alive"), json.dumps(
            {"refreshed": time.time(), "host": socket.gethostname(), "pid": os.getpid(), **extra}) + "\n")

    # -- keeping it ------------------------------------------------------------------------
    def check(self) -> None:
        """Raise LeaseHeld when another process has taken the run since (say, after a pause longer
        than the timeout): its writes and ours must not mix."""
        if self.lost:
            raise LeaseHeld(self.lost)
        newer = [s for s in self._seqs() if s > (self.seq or 0)]
        if newer:
            theirs = self._read(self._path(newer[-1], "json")) or {}
            self.lost = (f"run {self.run!r} was taken over by {describe(theirs)} while this process held it: "
                         "stopping without writing")
            raise LeaseHeld(self.lost)

    def refresh(self) -> None:
        try:
            self.check()
            self._write_alive()
        except LeaseHeld:
            pass  # self.lost says why; the trainer stops at its next checkpoint
        except LaclipError as exc:  # a store blip: the next refresh tries again well before the timeout
            log.warning("could not refresh the lease of run %r: %s", self.run, exc)

    def keep_alive(self, every_s: float | None = None) -> "Lease":
        every = every_s or max(1.0, self.timeout_s / 6)

        def loop():
            while not self._stop.wait(every):
                self.refresh()

        self._thread = threading.Thread(target=loop, name="laclip-lease", daemon=True)
        self._thread.start()
        return self

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.seq is not None and not self.lost:
            try:
                self._write_alive(released=True)
            except LaclipError as exc:
                log.warning("could not release the lease of run %r: %s", self.run, exc)


SKEW_S = 300  # clocks of two hosts may disagree by this much; a refresh further ahead is no refresh


def _unreadable_time(value) -> str | None:
    """Why a lease time cannot be used ('is not a number'...), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "is not a number" if value is not None else "is missing"
    if not math.isfinite(value):
        return "is not a finite number"
    if value > time.time() + SKEW_S:
        return f"lies {value - time.time():.0f}s in the future (a clock ahead, or a damaged lease)"
    return None


def describe(record: dict) -> str:
    return f"pid {record.get('pid', '?')} on {record.get('host', '?')} (since {record.get('started', '?')})"

"""The ledger's journal on this node: the records that the database could not take when their call
ended, kept on disk until it can.

A record is a JSON line, written and fsync'd before the call's end is reported, so a node that
crashes or restarts meanwhile loses none. `deliver` inserts the pending records into the ledger in the
order they were written, each at most once (the request id is the ledger's primary key: a record
already there is skipped), and then forgets them; a delivery cut short by the database going away
again keeps what it did not insert.

A journal that cannot be written (a full disk) says so in `writable`: the node then refuses new calls
while the database is away, since nothing they computed could be billed. Processes that share a
MOONSERVE_HOME share its journal, under an exclusive file lock.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

log = logging.getLogger("moonserve.ledger")


MIN_FREE_BYTES = 1 << 20  # below this much free space, a disk is taken as full (a record needs some of it)
ROOM_CHECK_SECONDS = 0.5


def has_room(folder: Path, _seen: dict = {}) -> bool:  # noqa: B006 (a small cache of statvfs results)
    """Whether the file system holding `folder` has MIN_FREE_BYTES free (asked at most every half
    second: it is asked before every call)."""
    now = time.monotonic()
    seen = _seen.get(folder)
    if seen is not None and now - seen[1] < ROOM_CHECK_SECONDS:
        return seen[0]
    try:
        st = os.statvfs(folder)
        room = st.f_bavail * st.f_frsize >= MIN_FREE_BYTES
    except OSError:
        room = False
    _seen[folder] = (room, now)
    return room


class JournalUnwritable(Exception):
    """The record could not be made durable (the disk is full, or gone)."""


def _encode(row: dict) -> str:
    return json.dumps({k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()},
                      separators=(",", ":"))


def _decode(line: str, datetime_fields: tuple[str, ...]) -> dict:
    row = json.loads(line)
    for k in datetime_fields:
        if isinstance(row.get(k), str):
            row[k] = datetime.fromisoformat(row[k])
    return row


class LedgerJournal:
    def __init__(self, path: Path, datetime_fields: tuple[str, ...] = ("created_at",)):
        self.path = path
        self.datetime_fields = datetime_fields
        self._lock = threading.Lock()
        self.writable = True
        self.pending = self._count()

    @property
    def usable(self) -> bool:
        """Whether a record could be journaled now: the last write worked and the disk has room."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self.writable and has_room(self.path.parent)

    def _count(self) -> int:
        try:
            with open(self.path, encoding="utf-8") as f:
                return sum(1 for line in f if line.strip())
        except FileNotFoundError:
            return 0

    @contextmanager
    def _locked(self):
        """This process's lock, then the file lock that other processes on this home take."""
        with self._lock:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # (releases the lock)

    def append(self, row: dict) -> None:
        """Make the record durable; JournalUnwritable if the disk will not take it."""
        data = (_encode(row) + "\n").encode()
        try:
            with self._locked():
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    if os.write(fd, data) != len(data):
                        raise OSError("short write")
                    os.fsync(fd)
                except OSError:
                    self._drop_partial_line()
                    raise
                finally:
                    os.close(fd)
        except OSError as exc:
            self.writable = False
            raise JournalUnwritable(str(exc)) from exc
        self.writable = True
        self.pending += 1

    def _drop_partial_line(self) -> None:
        """A write cut short leaves part of a line: cut the file back to its last whole line."""
        try:
            with open(self.path, "rb+") as f:
                data = f.read()
                keep = data.rfind(b"\n") + 1
                if keep != len(data):
                    f.truncate(keep)
        except OSError:
            pass

    def check_writable(self) -> bool:
        """Whether a record could be written now (a probe beside the journal, then removed)."""
        probe = self.path.with_suffix(".probe")
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                if os.write(fd, b"x" * 4096) != 4096:
                    raise OSError("short write")
                os.fsync(fd)
            finally:
                os.close(fd)
                probe.unlink(missing_ok=True)
            self.writable = True
        except OSError:
            self.writable = False
        return self.writable

    def deliver(self, insert_missing) -> int:
        """Insert the pending records with `insert_missing(rows)` (which skips request ids already in
        the ledger and raises if the database is away), in order; returns how many were delivered."""
        with self._locked():
            try:
                with open(self.path, encoding="utf-8") as f:
                    lines = [line for line in f if line.strip()]
            except FileNotFoundError:
                self.pending = 0
                return 0
            rows = []
            for line in lines:
                try:
                    rows.append(_decode(line, self.datetime_fields))
                except ValueError:
                    log.error("ledger journal %s: a line that is not a record was skipped: %.200s", self.path, line)
            if rows:
                insert_missing(rows)
            os.unlink(self.path)  # every record is in the ledger now
            self.pending = 0
            if rows:
                log.info("ledger journal: %d record(s) delivered to the database", len(rows))
            return len(rows)

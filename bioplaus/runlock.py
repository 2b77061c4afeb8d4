"""One writer per run directory: ``<run>/.lock`` holds the writer's pid and host.

The lock file is created with ``O_CREAT | O_EXCL`` (atomic on local and NFSv3+
file systems), so of two ``train`` processes started on one ``--out`` exactly
one gets it; the other is refused with :class:`RunLocked` naming the holder.
A lock left by a process that has died (same host, pid no longer running) is
taken over, with a message; within one process a second writer (another
thread's run) is refused as well. The lock is released (the file removed) only by
its holder, and only if the file still names it.
"""
from __future__ import annotations

import os
import socket
import time

from bioplaus.io import CheckpointError

LOCK_NAME = ".lock"
_HELD: dict = {}  # lock path -> id of the RunLock of this process that holds it


class RunLocked(CheckpointError):
    """The run directory is in use by another process."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return True
    return True


def _read(path: str):
    """``(pid, host, since)`` of a lock file, or None when unreadable."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            parts = f.read(4096).split()
        return int(parts[0]), parts[1], " ".join(parts[2:])
    except (OSError, ValueError, IndexError):
        return None


class RunLock:
    """``with RunLock(folder): ...`` or :meth:`acquire` / :meth:`release`."""

    def __init__(self, folder, log=print):
        self.folder = os.fspath(folder)
        self.path = os.path.join(self.folder, LOCK_NAME)
        self.log = log
        self.held = False
        self.pid, self.host = os.getpid(), socket.gethostname()
        self.text = f"{self.pid} {self.host} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n"

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, self.text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def acquire(self) -> "RunLock":
        if self.held:
            return self
        os.makedirs(self.folder, exist_ok=True)
        for _ in range(3):
            if self._create():
                self.held = True
                _HELD[os.path.realpath(self.path)] = id(self)
                return self
            holder = _read(self.path)
            if holder is None:
                if not os.path.lexists(self.path):
                    continue  # released meanwhile: try again
                raise RunLocked(f"{self.folder} is locked by {self.path}, which cannot be read; "
                                "if no bioplaus train is using this directory, delete that file "
                                "and start again")
            pid, host, since = holder
            if host == self.host and pid == self.pid and os.path.realpath(self.path) in _HELD:
                raise RunLocked(f"{self.folder} is in use by another run of this process "
                                f"(process {pid} on {host} holds {self.path}); one writer per "
                                "run directory")
            if host == self.host and (pid == self.pid or not _alive(pid)):
                if pid != self.pid:
                    self.log(f"note: {self.path} was left by process {pid} on {host} "
                             f"(since {since or 'unknown'}), which is no longer running; "
                             "taking the run directory over")
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
                continue
            raise RunLocked(f"{self.folder} is in use by another bioplaus train: process {pid} "
                            f"on {host} (since {since or 'unknown'}) holds {self.path}; wait for "
                            "it to finish or stop it (it writes a checkpoint on SIGTERM), or use "
                            "another --out directory")
        raise RunLocked(f"{self.folder}: could not take {self.path} (another process keeps "
                        "taking it); try again")

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        if _HELD.get(os.path.realpath(self.path)) == id(self):
            del _HELD[os.path.realpath(self.path)]
        holder = _read(self.path)
        if holder is not None and holder[0] == self.pid and holder[1] == self.host:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()

    def __del__(self):
        try:
            self.release()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

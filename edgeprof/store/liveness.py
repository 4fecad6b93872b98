"""Runs whose process is gone: found and marked `aborted`, their rows kept.

A run records the pid and host that write it, and the recorder refreshes `heartbeat_unix_s`
every few seconds. A `kill -9`, an out-of-memory kill or a power cut leaves the row `running`;
whoever opens the database next decides, from those three, that nobody is writing it anymore:
on the same host, when its pid is gone (or now belongs to a process started after the run);
from another host, when its heartbeat is older than `STALE_AFTER_S`.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

HEARTBEAT_INTERVAL_S = 5.0
# A run on another machine may sit in a pooled database on a shared disk; give it long enough
# that a suspended laptop is not declared dead, short enough that a stuck row does not last.
STALE_AFTER_S = 600.0


@lru_cache(maxsize=1)
def host_id() -> str:
    """This machine, as a short hash: the hostname and the OS's machine id, never stored raw."""
    secret = ""
    for name in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            with open(name) as f:
                secret = f.read().strip()
            break
        except OSError:
            continue
    return hashlib.sha256(f"{socket.gethostname()}|{secret}".encode()).hexdigest()[:16]


def pid_alive(pid: int, started_unix_s: float | None) -> bool:
    """Whether `pid` runs a process that could be the one that started a run at that time (a
    pid reused by a later process does not count)."""
    import psutil

    try:
        created = psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.Error:  # exists but cannot be inspected (another user's): assume it is ours
        return True
    return started_unix_s is None or created <= started_unix_s + 2.0


def orphan_reason(
    run: Mapping[str, Any],
    *,
    this_host: str,
    now_unix_s: float,
    alive: Callable[[int, float | None], bool] = pid_alive,
) -> str | None:
    """Why a `running` run has no live writer, or None while it may still have one."""
    pid, host, beat = run.get("pid"), run.get("host_id"), run.get("heartbeat_unix_s")
    if pid is None or host is None:
        return None  # written before edgeprof recorded writers: nothing to go on
    if host == this_host:
        if alive(int(pid), _unix(run.get("started_at"))):
            return None
        return f"its process (pid {pid}) ended without finishing the run (killed or crashed)"
    if beat is not None and now_unix_s - float(beat) > STALE_AFTER_S:
        since = datetime.fromtimestamp(float(beat)).astimezone().isoformat(timespec="seconds")
        return f"no heartbeat from its host since {since}"
    return None


def reap_orphaned_runs(conn: Any) -> list[tuple[str, str]]:
    """Mark every orphaned `running` run `aborted`, with the reason; returns (run id, reason).

    `conn` is an sqlite3 connection. Each update is conditional on the row still being
    `running`, so a run that finishes meanwhile keeps its own status.
    """
    rows = conn.execute(
        "SELECT id, pid, host_id, heartbeat_unix_s, started_at FROM runs WHERE status = 'running'"
    ).fetchall()
    if not rows:
        return []
    now, here = time.time(), host_id()
    reaped = []
    for run_id, pid, host, beat, started in rows:
        run = {"pid": pid, "host_id": host, "heartbeat_unix_s": beat, "started_at": started}
        reason = orphan_reason(run, this_host=here, now_unix_s=now)
        if reason is None:
            continue
        with conn:
            cur = conn.execute(
                "UPDATE runs SET status = 'aborted', error = ?, ended_at = ? "
                "WHERE id = ? AND status = 'running'",
                (reason, _iso_now(), run_id),
            )
        if cur.rowcount:
            reaped.append((run_id, reason))
    return reaped


def this_process() -> dict[str, Any]:
    """The liveness fields a new run records."""
    return {"pid": os.getpid(), "host_id": host_id(), "heartbeat_unix_s": time.time()}


def _unix(iso: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(iso)).timestamp() if iso else None
    except ValueError:
        return None


def _iso_now() -> str:
    from datetime import timezone

    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")

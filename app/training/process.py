"""The trainer's process: started detached in a session of its own, found again by pid and
start time (a pid alone may be reused), stopped by signals to its whole group."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil

from app.config import child_environment

# Our own children, kept so each is reaped when it ends (a dead child stays a zombie until
# its parent waits for it). A process started before a restart is reaped by init instead.
_children: dict[int, subprocess.Popen[bytes]] = {}
_lock = threading.Lock()
START_TIME_TOLERANCE_S = 1.0


def launch(*, python: Path, args: list[str], cwd: Path, log_path: Path) -> tuple[int, float]:
    """Starts `python -u args...` in `cwd`, output to `log_path`; its pid and start time."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            # -u: unbuffered, so the log has every line even when the trainer crashes.
            [str(python), "-u", *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives Atelier and its terminal; one group to signal
            env=child_environment(),  # not Atelier's token or API key
            close_fds=True,
        )
    with _lock:
        _children[proc.pid] = proc
    try:
        started = psutil.Process(proc.pid).create_time()
    except psutil.Error:
        started = time.time()
    return proc.pid, started


def is_running(pid: int | None, started: float | None) -> bool:
    """True while the process recorded as (pid, start time) is alive and not a zombie."""
    if pid is None or started is None:
        return False
    with _lock:
        child = _children.get(pid)
        if child is not None and child.poll() is not None:
            del _children[pid]
            return False
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - started) > START_TIME_TOLERANCE_S:
            return False  # the pid now belongs to another process
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def signal_group(pid: int, started: float, sig: signal.Signals) -> bool:
    """Sends `sig` to the trainer's process group (its data loaders too); False if it is gone."""
    if not is_running(pid, started):
        return False
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        os.kill(pid, sig)
    return True

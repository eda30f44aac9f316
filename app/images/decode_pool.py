"""The shared process pool that decodes images, for import and export alike.

Forkserver, so it is safe to start beside the server's threads; each worker exits when the
process that made the pool dies, even by SIGKILL.
"""

from __future__ import annotations

import multiprocessing
import os
import select as io_select
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor

_pool: ProcessPoolExecutor | None = None
_pool_size = 0


def decode_pool(workers: int) -> Executor | None:
    """A shared process pool (forkserver: safe beside the server's threads), or None for one."""
    global _pool, _pool_size
    n = workers or os.cpu_count() or 1
    if n <= 1:
        return None
    if _pool is None or _pool_size != n:
        if _pool is not None:
            _pool.shutdown(wait=False)
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["app.images.decode"])
        _pool = ProcessPoolExecutor(
            max_workers=n, mp_context=ctx, initializer=_exit_with, initargs=(os.getpid(),)
        )
        _pool_size = n
    return _pool


def _exit_with(parent: int) -> None:
    """Pool worker start: exit when the process that made the pool dies, even by SIGKILL.

    Otherwise a killed server leaves its workers (and, through them, the forkserver) alive
    for ever: each holds the pipes whose end-of-file would have told it (bench/crash.py left
    632 of them behind in 100 trials).
    """

    def watch() -> None:
        try:
            fd = os.pidfd_open(parent)  # Linux: readable once the process has exited
            io_select.select([fd], [], [])
        except (AttributeError, OSError):  # elsewhere: look once a second
            while True:
                time.sleep(1.0)
                try:
                    os.kill(parent, 0)
                except ProcessLookupError:
                    break
                except PermissionError:
                    pass
        os._exit(0)

    threading.Thread(target=watch, name="atelier-exit-with-parent", daemon=True).start()

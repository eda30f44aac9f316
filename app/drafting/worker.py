"""The web app's drafting worker: a background thread that runs queued jobs one at a time.

The loaded model is kept between jobs that ask for the same engine, model and batch size,
so a one-image re-draft does not pay for loading it again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable

from sqlalchemy import Engine as DBEngine
from sqlmodel import Session

from app.config import Settings
from app.drafting import jobs
from app.drafting.engines import DraftError, Engine
from app.images.store import ContentStore

log = logging.getLogger("atelier.drafting")

EngineFactory = Callable[..., Engine]  # (engine=, model=, batch_size=) -> Engine
POLL_S = 2.0
WORKER_NICE = 10


class DraftWorker:
    def __init__(
        self,
        *,
        db: DBEngine,
        store: ContentStore,
        settings: Settings,
        engine_factory: EngineFactory,
    ) -> None:
        self.db = db
        self.store = store
        self.settings = settings
        self.engine_factory = engine_factory
        self.worker = jobs.worker_id()
        self._engine: Engine | None = None
        self._engine_key: tuple[str, str, int] | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="atelier-drafting", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """A job was queued: look now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        if self._engine is not None:
            self._engine.close()

    def _loop(self) -> None:
        _yield_to_requests()
        while not self._stop.is_set():
            try:
                ran = self._run_one()
            except Exception:  # the worker must outlive any one job's failure
                log.exception("drafting worker error")
                ran = False
            if not ran:
                self._wake.wait(POLL_S)
                self._wake.clear()

    def _run_one(self) -> bool:
        with Session(self.db) as session:
            job = jobs.claim(session, worker=self.worker)
            if job is None:
                return False
            job_id, key = job.id, (job.engine, job.model, job.batch_size)
        assert job_id is not None
        try:
            engine = self._engine_for(key)
        except DraftError as e:
            jobs.mark_failed(self.db, job_id, e.message)
            return True
        jobs.run_job(
            self.db,
            job_id=job_id,
            engine=engine,
            store=self.store,
            max_pixels=self.settings.draft_max_pixels,
            worker=self.worker,
        )
        return True

    def _engine_for(self, key: tuple[str, str, int]) -> Engine:
        if self._engine is not None and self._engine_key == key:
            return self._engine
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        engine, model, batch = key
        self._engine = self.engine_factory(engine=engine, model=model, batch_size=batch)
        self._engine_key = key
        if getattr(self._engine, "device", None) is not None and self._engine.device.type == "cpu":  # type: ignore[attr-defined]
            # Drafting on the CPU inside the web server: leave a core for the editors' saves.
            import torch

            torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
        return self._engine


def _yield_to_requests() -> None:
    """Lowers this thread's CPU priority (Linux: nice is per thread, and the threads it starts,
    such as torch's, inherit it). Its share of the GIL stays: bench/load.py measures that."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICE)

"""The web app's drafting worker: a child process that runs queued jobs one at a time.

Why a process and not a thread: drafting is CPU work too (the whole model on a CPU-only
machine; inputs and grammar masks beside a GPU), and in the server's process it shared the
GIL and the cores with the requests of people editing. `bench/load.py` measured their p95
save latency going from 12 to 21 ms with a thread, nice or not. A process of its own, at a
lower priority (nice; drafting on the CPU: SCHED_IDLE), leaves the web server alone: p95
12.0 ms with a CPU drafting job, 11.9 without, on a 2-core machine.

The server side (`DraftWorker`) starts the child only when a job is waiting, so a server that
never drafts never loads torch. It tells the child about new jobs through the child's stdin,
restarts it if it dies, and gives up on a job that kills it `MAX_CRASHES` times. The child
(`main`) exits at once when its stdin closes: the server stopped or died, even by SIGKILL.
A job cut short that way is resumed by the next worker (`jobs.claim`).

The child keeps the loaded model between jobs that ask for the same engine, model and batch
size, so a one-image re-draft does not pay for loading it again; after
`Settings.draft_idle_exit_s` without a job it exits and gives the memory back.

Run by hand: `python -m app.drafting.worker` reads the settings as one JSON line on stdin.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import Engine as DBEngine
from sqlmodel import Session, col, select

from app import gpu
from app.config import Settings, child_environment
from app.drafting import jobs, pipeline
from app.engines.interface import DraftError, Engine
from app.images.store import ContentStore
from app.models import DraftJob, JobStatus

log = logging.getLogger("atelier.drafting")

POLL_S = 2.0  # how often both sides look for work nobody announced (a dead CLI's job)
WORKER_NICE = 10
MAX_CRASHES = 3  # a job whose worker dies this many times is marked failed
STOP_WAIT_S = 5.0
ROOT = Path(__file__).resolve().parent.parent.parent


class DraftWorker:
    """The server's handle on its drafting process: start, wake, stop."""

    def __init__(self, *, db: DBEngine, settings: Settings, prestart: bool | None = None) -> None:
        """`prestart`: start the drafting process with the server, before any job, so that
        a first click finds it with its imports done and the model's processor and grammar
        ready (None: where drafting is local on a machine with an NVIDIA GPU). It exits
        after `Settings.draft_idle_exit_s` without a job, as any drafting process does."""
        self.db = db
        self.settings = settings
        if prestart is None:
            prestart = settings.draft_engine == "local" and gpu.cuda_present()
        self._prestart = prestart
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # guards _proc between wake() and the supervisor
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._crashes: dict[int, int] = {}  # job id -> worker deaths while running it
        self._retry_at = 0.0  # after a crash, when to start another process
        self._supervisor = threading.Thread(
            target=self._supervise, name="atelier-drafting-supervisor", daemon=True
        )

    @property
    def pid(self) -> int | None:
        """The drafting process's pid while it runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def start(self) -> None:
        """Starts supervising; a job a stopped server left unfinished starts the process."""
        self._supervisor.start()

    def wake(self) -> None:
        """A job was queued: have the process look now rather than at its next poll."""
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None and proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.write(b"\n")
                    proc.stdin.flush()
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._supervisor.join(STOP_WAIT_S)
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # the child exits at end of input
        try:
            proc.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _supervise(self) -> None:
        while not self._stop.is_set():
            try:
                self._tend()
            except Exception:  # supervising must outlive any one failure
                log.exception("drafting supervisor error")
            self._wake.wait(POLL_S)
            self._wake.clear()

    def _tend(self) -> None:
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                return
            if proc is not None:
                self._proc = None
                self._reaped(proc)
            if time.monotonic() < self._retry_at:
                return
            with Session(self.db) as session:
                waiting = jobs.pending_job_ids(session)
            if (waiting or self._prestart) and not self._stop.is_set():
                self._proc = self._spawn()
                self._prestart = False

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = child_environment()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.drafting.worker"],
            stdin=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        assert proc.stdin is not None
        settings = self.settings.model_dump(mode="json", exclude={"token"})
        settings["data_dir"] = str(self.settings.data_dir.resolve())
        proc.stdin.write(json.dumps(settings).encode() + b"\n")
        proc.stdin.flush()
        log.info("drafting process %d started", proc.pid)
        return proc

    def _reaped(self, proc: subprocess.Popen[bytes]) -> None:
        """The process is gone: after a crash, count it against the job it was running."""
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        code = proc.returncode
        if code == 0:
            self._retry_at = 0.0
            return
        worker = jobs.worker_id(proc.pid)
        with Session(self.db) as session:
            running = session.exec(
                select(DraftJob.id)
                .where(DraftJob.worker == worker)
                .where(col(DraftJob.status) == JobStatus.running)
            ).all()
        crashes = 1
        for job_id in running:
            assert job_id is not None
            crashes = self._crashes[job_id] = self._crashes.get(job_id, 0) + 1
            if crashes >= MAX_CRASHES:
                del self._crashes[job_id]
                jobs.mark_failed(
                    self.db,
                    job_id,
                    f"The drafting process died {MAX_CRASHES} times while running this job "
                    f"(last exit status {code}); the server's log says why. Out of memory is the "
                    "usual cause: try a smaller batch, a smaller model or fewer image pixels.",
                )
        # Wait a little before the next try, longer after each crash on the same job.
        self._retry_at = time.monotonic() + 2.0 ** (crashes - 1)
        log.warning("drafting process %d exited with status %s", proc.pid, code)


class JobRunner:
    """Claims and runs jobs one at a time, keeping the loaded engine between them."""

    def __init__(self, settings: Settings) -> None:
        from app.db import make_engine
        from app.drafting.open_engine import open_engine
        from app.images.store import content_store

        self.settings = settings
        self.db = make_engine(settings)
        self.store: ContentStore = content_store(settings)
        self.open_engine = open_engine
        self.worker = jobs.worker_id()
        self._engine: Engine | None = None
        self._engine_key: tuple[str, str, int, str | None] | None = None

    def run_one(self) -> bool:
        """Runs the oldest runnable job to its end; False when there was none."""
        with Session(self.db) as session:
            job = jobs.claim(session, worker=self.worker)
            if job is None:
                return False
            job_id, key = job.id, (job.engine, job.model, job.batch_size, job.base_url)
        assert job_id is not None
        try:
            engine = self._engine_for(key)
        except DraftError as e:
            jobs.mark_failed(self.db, job_id, e.message)
            return True
        pipeline.run_job(
            self.db,
            job_id=job_id,
            engine=engine,
            store=self.store,
            max_pixels=self.settings.draft_max_pixels,
            worker=self.worker,
        )
        return True

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        self.db.dispose()

    def _engine_for(self, key: tuple[str, str, int, str | None]) -> Engine:
        if self._engine is not None and self._engine_key == key:
            return self._engine
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        engine, model, batch, base_url = key
        self._engine = self.open_engine(
            self.settings, engine=engine, model=model, batch_size=batch, base_url=base_url
        )
        self._engine_key = key
        if self._engine.leave_one_core():
            # Drafting on the CPU is batch work that would take every core: it runs only when
            # nothing else wants the CPU, the web server's requests first.
            _only_when_idle()
        return self._engine


def _only_when_idle() -> None:
    """Moves every thread of this process (and so the threads they start) to SCHED_IDLE.

    Not on a GPU: there the CPU loop feeds the GPU step by step, and waiting for idle cores
    would starve it."""
    policy = getattr(os, "SCHED_IDLE", None)
    if policy is None:
        return
    for task in Path("/proc/self/task").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            os.sched_setscheduler(int(task.name), policy, os.sched_param(0))


def main() -> None:
    """The drafting process: settings on the first stdin line, a wake on each later one."""
    # First, before any thread starts: on Linux nice is per thread, and new threads (torch's
    # too) inherit it.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, 0, WORKER_NICE)
    logging.basicConfig(level=logging.WARNING, format="atelier drafting: %(message)s")
    first = sys.stdin.buffer.readline()
    if not first:
        return
    settings = Settings(**json.loads(first))
    if settings.draft_engine == "local":
        # Imports, processor and grammar of the model a job most likely asks for, while
        # this thread looks for the job: seconds off a first caption.
        threading.Thread(
            target=_prepare_engine, args=(settings,), name="atelier-prepare", daemon=True
        ).start()
    wake = threading.Event()
    threading.Thread(target=_listen, args=(wake,), name="atelier-stdin", daemon=True).start()
    runner = JobRunner(settings)
    idle_since = time.monotonic()
    while True:
        try:
            ran = runner.run_one()
        except Exception:  # one job's failure must not end the process
            log.exception("drafting worker error")
            ran = False
        if ran:
            idle_since = time.monotonic()
            continue
        if time.monotonic() - idle_since > settings.draft_idle_exit_s:
            break
        wake.wait(POLL_S)
        wake.clear()
    runner.close()


def _prepare_engine(settings: Settings) -> None:
    """`LocalEngine.prepare` for the settings' model, with the arguments `open_engine`
    loads it with; a failure is left for the load to report."""
    try:
        from app.engines.local.engine import LocalEngine
        from app.engines.schema import DraftLimits

        LocalEngine.prepare(
            settings.draft_model,
            max_pixels=settings.draft_max_pixels,
            allow_download=settings.draft_allow_download,
            limits=DraftLimits.scaled(
                max_chars=settings.draft_max_chars, max_elements=settings.draft_max_elements
            ),
            cache_dir=settings.cache_dir,
        )
    except Exception:
        log.debug("preparing the drafting engine ahead failed", exc_info=True)


def _listen(wake: threading.Event) -> None:
    # From the file descriptor, not sys.stdin.buffer: a daemon thread blocked in a buffered
    # read holds the buffer's lock, and the interpreter, finalizing after an idle exit,
    # aborted on it ("_enter_buffered_busy", status -6). A raw read holds no lock.
    fd = sys.stdin.fileno()
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        wake.set()
    # End of input: the server stopped or died. Leave now; a job in flight stays claimed by
    # this pid, which the next worker sees is gone, and resumes it.
    os._exit(0)


if __name__ == "__main__":
    main()

"""`atelier serve` as a real process: one server per data dir (a lock file naming the holder),
and a token that stays out of the process list."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

TOKEN = "correct-horse-battery-staple"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(
    data: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`atelier serve` on a free port until it answers; stopped (SIGINT) at the end."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port), "--data-dir", str(data),
         *extra],
        env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        yield proc, url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve_once(data: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "serve", "--port", str(free_port()), "--data-dir",
         str(data), *extra],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_second_server_on_a_data_dir_in_use_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with serving(data) as (first, url):
        in_flight = data / "tmp" / "upload-in-flight"  # what the first one is receiving
        in_flight.mkdir()
        (in_flight / "000000.png").write_bytes(b"half an image")
        second = serve_once(data)
        assert second.returncode == 2, second.stderr
        assert f"in use by another Atelier: process {first.pid}" in second.stderr
        assert url.rsplit(":", 1)[1] in second.stderr and "Traceback" not in second.stderr
        assert (in_flight / "000000.png").exists()
        assert httpx.get(f"{url}/healthz").status_code == 200
    # The lock goes with its process, a killed one too.
    with serving(data) as (again, _):
        again.kill()
        again.wait()
    with serving(data):
        pass


def test_the_token_comes_from_the_environment_or_a_file_not_the_command_line(
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    for extra, env in (
        (("--token-file", str(token_file)), {}),
        ((), {"ATELIER_TOKEN_FILE": str(token_file)}),
        ((), {"ATELIER_TOKEN": TOKEN}),
    ):
        with serving(tmp_path / "d", *extra, env=env) as (proc, url):
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
            assert TOKEN.encode() not in cmdline
            assert httpx.get(f"{url}/api/datasets").status_code == 401
            auth = {"Authorization": f"Bearer {TOKEN}"}
            assert httpx.get(f"{url}/api/datasets", headers=auth).status_code == 200
        assert proc.stderr is not None and "warning" not in proc.stderr.read()
    # On the command line it still works, with a warning saying why not to.
    with serving(tmp_path / "d", "--token", TOKEN) as (proc, url):
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert httpx.get(f"{url}/api/datasets", headers=auth).status_code == 200
    assert proc.stderr is not None
    assert "shows in the process list" in proc.stderr.read()
    missing = serve_once(tmp_path / "d", "--token-file", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "cannot read the token file" in missing.stderr

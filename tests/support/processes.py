"""Servers the tests start for real (mlflow server, mlflow models serve, streamlit, prefect serve): a free port,
the process in its own group, a wait for its health URL, and a stop that leaves no process behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], env: dict[str, str], log, cwd=None) -> subprocess.Popen:
    """Start `cmd` in its own process group (so stop() reaches the workers it forks), output into `log`."""
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_healthy(proc: subprocess.Popen, url: str, timeout: float, ok: Callable[[bytes], bool] = bool) -> bool:
    """Poll `url` until its body satisfies `ok`; False when the process exits or the time runs out first."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if ok(response.read()):
                    return True
        except OSError:  # not listening yet (URLError and connection errors are OSErrors)
            pass
        time.sleep(0.5)
    return False


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Signal the whole group, then kill it if it has not ended within `timeout` seconds."""
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=timeout)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextmanager
def alignops_serve(model: str, log_path: Path, tracking_uri: str) -> Iterator[str]:
    """`alignops serve --model <model>` on a free port until the block ends; yields its /invocations URL."""
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    cmd = [sys.executable, "-m", "alignops.cli", "serve", "--model", model, "--port", str(port)]
    with log_path.open("w") as log:
        server = start(cmd, env, log)
        try:
            up = wait_healthy(server, f"http://127.0.0.1:{port}/ping", 180, ok=lambda _body: True)
            assert up, "no answer on /ping:\n" + log_path.read_text()
            yield f"http://127.0.0.1:{port}/invocations"
        finally:
            stop(server)

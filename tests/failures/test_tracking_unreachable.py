"""A tracking server on a closed port: a clear message naming the URI within 30 s (it was 254-287 s of silence
and chained tracebacks), before any data work, nothing left behind."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alignops.errors import TrackingUnavailable
from alignops.tracking_server import require_reachable


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: nothing listens there


@pytest.mark.parametrize("command", [["data", "validate"], ["run", "--from", "data", "--to", "data"]])
def test_closed_port_is_named_within_30_s(command: list[str], home: Path) -> None:
    uri = f"http://127.0.0.1:{closed_port()}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "ALIGNOPS_HOME": str(home)}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "alignops.cli", *command, "-p", "tiny"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    seconds = time.monotonic() - started
    assert done.returncode == 3, done.stderr
    assert seconds < 30, seconds
    assert f"MLflow tracking server at {uri}" in done.stderr and "MLFLOW_TRACKING_URI" in done.stderr
    assert "Traceback" not in done.stderr and "Data validation" not in done.stderr
    assert not (home / "gx-docs").exists() and not (home / "mlflow.db").exists()


def test_local_store_and_answering_server_pass() -> None:
    require_reachable("sqlite:///nowhere.db")  # no server needed
    with pytest.raises(TrackingUnavailable, match="3 tries"):
        require_reachable(f"http://127.0.0.1:{closed_port()}", delays=(0.0, 0.0))

"""Where alignops keeps its state, and the environment that keeps the embedded defaults offline and quiet.

Everything a run writes outside the repo (MLflow's SQLite store and artifacts, Prefect's home, the DVC
remote, downloaded source packages, the tokenizer) lives under one folder: `ALIGNOPS_HOME`, default
`./.alignops`. Server mode only changes URLs, read from the environment when used (see alignops/tracking/ and
data/versioning.py), never here at import time.
"""

from __future__ import annotations

import os
from pathlib import Path

# Telemetry off by default: these libraries phone home on import or start, which hangs or litters on a
# machine without internet. setdefault, so a user who wants telemetry can still turn it on.
OFFLINE_ENV = {
    "DO_NOT_TRACK": "true",  # MLflow honours only the string "true"
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # The default 20 s is too tight for Prefect's ephemeral server on 2 cores.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "DVC_NO_ANALYTICS": "1",  # its analytics daemon crashes in dvc 3.67 and litters /tmp
    "GX_ANALYTICS_ENABLED": "false",
    "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' "Loading weights" bar on every load of a base
    "TOKENIZERS_PARALLELISM": "false",
}


def home() -> Path:
    """The folder that holds all local state (`ALIGNOPS_HOME`, default `./.alignops`), made if missing."""
    path = Path(os.environ.get("ALIGNOPS_HOME", ".alignops")).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from alignops.errors import ConfigError

        raise ConfigError(
            f"ALIGNOPS_HOME={path} cannot hold alignops' local state: {exc.strerror or exc}. Set ALIGNOPS_HOME to a "
            "folder you can write to (default ./.alignops)."
        ) from None
    return path


def apply_offline_env() -> None:
    """Set the telemetry-off variables unless the user set them; and keep Prefect's state under home."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("PREFECT_HOME", str(home() / "prefect"))

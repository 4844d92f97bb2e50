"""Where MLflow is: the tracking URI, the configured `mlflow` module, experiments, and filter-string quoting.
The rest of the tracking package reaches MLflow only through `connect()`; importing this module imports no MLflow.

Embedded default: a SQLite store and an artifact folder under ALIGNOPS_HOME. Server mode: set
MLFLOW_TRACKING_URI (read when a run starts, never at import).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from alignops import settings
from alignops.errors import ModelError

if TYPE_CHECKING:
    import mlflow as mlflow_module


# mlflow.set_tracking_uri copies the URI into MLFLOW_TRACKING_URI, for subprocesses. When that URI is our own
# default (SQLite under ALIGNOPS_HOME) it is also recorded in DEFAULT_URI_ENV, in the environment so that
# subprocesses inherit the record too: a later or a child's ALIGNOPS_HOME (another test, another project) is then
# not shadowed by it. A URI the user set is never recorded: the next call would take it for our default and
# fall back to SQLite under home (server mode logged all but its first call locally).
DEFAULT_URI_ENV = "ALIGNOPS_DEFAULT_TRACKING_URI"


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if the user set it, else SQLite under ALIGNOPS_HOME."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env and env != os.environ.get(DEFAULT_URI_ENV):
        return env
    return default_uri()


def default_uri() -> str:
    return f"sqlite:///{settings.home() / 'mlflow.db'}"


def connect() -> mlflow_module:
    """The mlflow module, pointed at tracking_uri() (offline settings applied first)."""
    settings.apply_offline_env()
    import mlflow

    uri = tracking_uri()
    if uri == default_uri():
        os.environ[DEFAULT_URI_ENV] = uri
    mlflow.set_tracking_uri(uri)
    return mlflow


def experiment_id(name: str) -> str:
    """The experiment's id, created on first use. With a local store its artifacts go under home, not ./mlruns."""
    mlflow = connect()
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if not tracking_uri().startswith(("http://", "https://", "databricks")):
        location = (settings.home() / "mlartifacts" / name).as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


def filter_value(text: str) -> str:
    """`text` as a quoted value of an MLflow filter string: never raw user text. MLflow's filter grammar has no
    escape inside quotes, so a value with a single quote is double-quoted; one with both cannot be searched."""
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    raise ModelError(f"{text!r}: a name with both ' and \" cannot be searched in MLflow; rename it without one.")

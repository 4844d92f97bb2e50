"""The errors alignops raises for the user to read, and the one table that turns any exception into the message
and exit code the CLI prints.

Every error a user can cause or fix is an `AlignopsError`: its message says what was wrong, where (file, line,
field, URI) and how to fix it, in one paragraph, and its class says the exit code. Library exceptions that reach
the CLI with a user cause (an unknown registered model, a locked SQLite file) are translated here too, in
`user_error`, so the CLI needs no knowledge of any library. Nothing here imports a heavy library.

Exit codes: 2 for input the user must change (config, data, model, store, a missing file), 1 for a check that
ran and said no (data validation), 3 for a service that did not answer (the tracking server).
"""

from __future__ import annotations

USAGE = 2  # the input must change
CHECK_FAILED = 1  # a check ran and refused (data validation)
UNAVAILABLE = 3  # a service alignops needs did not answer


class AlignopsError(Exception):
    """Base of every error meant for the user; `exit_code` is what the CLI exits with, `heading` what it prints
    before the message."""

    exit_code = USAGE
    heading = "error"


class ConfigError(AlignopsError, ValueError):
    """A preset, override or setting that does not fit the typed config."""


class DataError(AlignopsError):
    """A dataset, source package or data version that cannot be used."""


class DataCheckFailed(DataError):
    """Data that ran through its checks and failed them (the report says which rows)."""

    exit_code = CHECK_FAILED
    heading = "Data validation failed"


class ModelError(AlignopsError, ValueError):
    """A model that cannot be used or registered: unknown, non-finite, rejected by a gate."""


class StoreError(AlignopsError, ValueError):
    """The preference store refused the input, or its database could not be used."""


class TrackingUnavailable(AlignopsError):
    """The MLflow tracking server did not answer."""

    exit_code = UNAVAILABLE


def message(exc: BaseException) -> str:
    """The error and its notes (the pipeline adds the stage where it stopped)."""
    return "\n".join([str(exc), *getattr(exc, "__notes__", [])])


def user_error(exc: BaseException) -> AlignopsError | None:
    """`exc` as the AlignopsError a user should read (keeping the notes the pipeline added), or None for a bug."""
    known = _translated(exc)
    if known is not None and known is not exc:
        known.__notes__ = list(getattr(exc, "__notes__", []))
    return known


def _translated(exc: BaseException) -> AlignopsError | None:
    """Library exceptions are recognised by their module and MLflow error code, so that naming them costs no
    import of the library."""
    if isinstance(exc, AlignopsError):
        return exc
    if isinstance(exc, FileNotFoundError):
        return AlignopsError(str(exc))
    kind = type(exc)
    if kind.__module__.startswith("mlflow") and getattr(exc, "error_code", "") in _MLFLOW_USER_CODES:
        return ModelError(
            f"MLflow: {getattr(exc, 'message', exc)}. Check the model name, version or alias "
            "(`mlflow models` / the MLflow UI list what is registered) and MLFLOW_TRACKING_URI."
        )
    if kind.__module__.startswith("sqlalchemy"):
        return store_error(exc, "the preference store")
    return None


def store_error(exc: BaseException, location: str) -> StoreError:
    """A database error as a StoreError whose hint fits its cause: a SQLite file that is locked or corrupt is
    not a server that is down."""
    reason = str(getattr(exc, "orig", None) or exc)
    low = reason.lower()
    if "locked" in low or "busy" in low:
        fix = (
            "Another process holds the SQLite file's write lock (a stuck `alignops` or dashboard, a sqlite3 shell "
            "in a transaction): end it, then try again."
        )
    elif "malformed" in low or "not a database" in low or "corrupt" in low or "disk i/o" in low:
        fix = (
            "The SQLite file is damaged: restore it from a backup, or recover what is readable with "
            "`sqlite3 <file> .recover | sqlite3 <new file>` and point ALIGNOPS_DATABASE_URL at the new file."
        )
    elif "unable to open" in low or "readonly" in low or "read-only" in low:
        fix = "The SQLite file or its folder cannot be opened for writing: check the path and its permissions."
    else:
        fix = "Is the database server running and reachable, and are ALIGNOPS_DATABASE_URL's user and password right?"
    return StoreError(f"cannot open {location}: {reason}. {fix}")


_MLFLOW_USER_CODES = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS")

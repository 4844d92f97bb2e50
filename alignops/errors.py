"""The errors alignops raises for the user to read, and the one table that turns any exception into the message
and exit code the CLI prints.

Every error a user can cause or fix is an `AlignopsError`: its message says what was wrong, where (file, line,
field, URI) and how to fix it, in one paragraph, and its class says the exit code. Library exceptions that reach
the CLI with a user cause (an unknown registered model, a locked SQLite file) are translated here too, in
`user_error`, so the CLI needs no knowledge of any library: they are recognised by their class, looked up only
when the library is already loaded, so nothing here imports a heavy library. A file system refusal on a path the
user chose (a full disk, a folder where a file belongs) is a user error too.

Exit codes: 2 for input the user must change (config, data, model, store, a missing file), 1 for a check that
ran and said no (data validation), 3 for a service that did not answer (the tracking server).
"""

from __future__ import annotations

import errno
import sys

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
    if isinstance(exc, AlignopsError):
        return exc
    if isinstance(exc, OSError) and (exc.filename is not None or exc.filename2 is not None):
        return path_error(exc)
    if isinstance(exc, FileNotFoundError):  # ours, with its own message: a model or registry entry not found
        return AlignopsError(str(exc))
    mlflow_error = _loaded_class("mlflow.exceptions", "MlflowException")
    if mlflow_error is not None and isinstance(exc, mlflow_error) and exc.error_code in _MLFLOW_USER_CODES:
        return ModelError(
            f"MLflow: {exc.message}. Check the model name, version or alias "
            "(`mlflow models` / the MLflow UI list what is registered) and MLFLOW_TRACKING_URI."
        )
    database_error = _loaded_class("sqlalchemy.exc", "SQLAlchemyError")
    if database_error is not None and isinstance(exc, database_error):
        return store_error(exc, "the preference store")
    return None


def _loaded_class(module: str, name: str) -> type[BaseException] | None:
    """A library's exception class when that library is loaded, else None: an exception of a library nobody
    imported cannot have been raised, so recognising it by its class costs no import."""
    return getattr(sys.modules.get(module), name, None)


def path_error(exc: OSError) -> AlignopsError:
    """A file system refusal on a path the user chose (an --out file, ALIGNOPS_HOME, a data file) as one
    paragraph: the path, the reason, and what to do."""
    path = exc.filename2 if exc.filename2 is not None else exc.filename
    reason = exc.strerror or str(exc)
    fix = _PATH_FIXES.get(exc.errno, "Check the path and its permissions, then try again.")
    return AlignopsError(f"cannot use {path}: {reason}. {fix}")


_PATH_FIXES = {
    errno.ENOENT: "Check the path: the file or its folder does not exist.",
    errno.EISDIR: "That is a folder: name a file inside it instead.",
    errno.ENOTDIR: "A part of the path is a file, not a folder: choose another path (or another ALIGNOPS_HOME).",
    errno.EEXIST: "A file stands where a folder is needed: choose another path (or another ALIGNOPS_HOME).",
    errno.EACCES: "Permission denied: choose a path you can write to, or fix its permissions.",
    errno.EPERM: "Permission denied: choose a path you can write to, or fix its permissions.",
    errno.EROFS: "The file system is read-only: choose a path on a writable disk.",
    errno.ENOSPC: "The disk is full: free some space, or choose a path on another disk.",
}


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

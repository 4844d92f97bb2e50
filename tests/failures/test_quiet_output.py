"""The one place the CLI configures output (alignops.quiet) silences the listed library notices and keeps every
other warning visible."""

from __future__ import annotations

import logging
import warnings

from alignops import quiet


def test_notices_are_filtered_and_real_warnings_stay() -> None:
    shown: list[str] = []
    with warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.showwarning = lambda message, *args, **kwargs: shown.append(str(message))
        quiet.configure()
        from alignops import tracking

        tracking.pyfunc_model()  # MLflow warns "Add type hints to the `predict` method" when this class is made
        warnings.warn("Checkpoint directory /x exists and is not empty.", UserWarning, stacklevel=1)
        warnings.warn_explicit("old API", DeprecationWarning, "lib.py", 1, module="somelib")
        warnings.warn("a real problem the user must see", UserWarning, stacklevel=1)
        warnings.warn_explicit("our own deprecation", DeprecationWarning, "x.py", 1, module="alignops.x")
    assert shown == ["a real problem the user must see", "our own deprecation"], shown
    assert logging.getLogger("lightning.pytorch.utilities.rank_zero").level == logging.WARNING


def test_notices_captured_into_logging_are_dropped_too() -> None:
    # Prefect routes warnings through logging.captureWarnings ("py.warnings"), replacing showwarning after the CLI
    # configured it: the notices must be dropped there as well, and a real warning must still arrive
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("py.warnings")
    handler, was_disabled = Collect(), logger.disabled
    logger.addHandler(handler)
    logger.disabled = False  # a logging dictConfig earlier in the session may have disabled it
    logging.captureWarnings(False)  # whoever captured before: start from the plain showwarning
    try:
        with warnings.catch_warnings():
            warnings.resetwarnings()
            warnings.simplefilter("always")  # shown every time, whatever this process warned before
            quiet.configure()
            logging.captureWarnings(True)  # as Prefect does, after the CLI configured the filters
            warnings.warn("You defined a `validation_step` but have no `val_dataloader`. Skipping.", stacklevel=1)
            warnings.warn("a real problem the user must see", UserWarning, stacklevel=1)
    finally:
        logging.captureWarnings(False)
        logger.removeHandler(handler)
        logger.disabled = was_disabled
    assert len(records) == 1 and "a real problem the user must see" in records[0], records

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

        tracking._pyfunc_model()  # MLflow warns "Add type hints to the `predict` method" when this class is made
        warnings.warn("Checkpoint directory /x exists and is not empty.", UserWarning, stacklevel=1)
        warnings.warn_explicit("old API", DeprecationWarning, "lib.py", 1, module="somelib")
        warnings.warn("a real problem the user must see", UserWarning, stacklevel=1)
        warnings.warn_explicit("our own deprecation", DeprecationWarning, "x.py", 1, module="alignops.x")
    assert shown == ["a real problem the user must see", "our own deprecation"], shown
    assert logging.getLogger("lightning.pytorch.utilities.rank_zero").level == logging.WARNING

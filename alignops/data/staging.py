"""Change data/ all or nothing: copy it to a staging folder, edit the copy, validate it, swap it in.

    update_data(data_dir, edit, bounds, sets=["rankings"], refusal="The new dashboard rankings ...")

Used by the feedback collection (dashboard rankings) and by `alignops data import`: a failed check or a crash
leaves data/ exactly as it was, and a reader never sees a half-written folder (the swap is two renames).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from alignops.data.validation import CONTRACTS, DataValidationError, ValidationBounds, validate_dataset


def present_sets(data_dir: Path) -> list[str]:
    """The contract sets that have a folder in data_dir (a set added to the contracts later may not yet)."""
    return [name for name in CONTRACTS if (data_dir / name).is_dir()]


def update_data(
    data_dir: Path,
    edit: Callable[[Path], None],
    bounds: ValidationBounds,
    refusal: str,
    sets: Iterable[str] | None = None,
) -> None:
    """Run edit(staging) on a copy of data_dir, validate the copy (`sets`, default every set present, cross-set
    leaks included), then swap it in. On a failed suite raise DataValidationError starting with `refusal`
    (what was refused and how to fix it); data_dir is untouched."""
    staging = data_dir.with_name(f".{data_dir.name}.staging-{os.getpid()}")
    old = data_dir.with_name(f".{data_dir.name}.old-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(data_dir, staging)
    try:
        edit(staging)
        report = validate_dataset(staging, bounds, sets=present_sets(staging) if sets is None else list(sets))
        if not report.success:
            raise DataValidationError(f"{refusal}\n{report.format()}", report)
        data_dir.rename(old)
        staging.rename(data_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

"""Data-contract validation of built datasets, via Great Expectations (GX 1.x): the entry point.

Every stage that reads data calls :func:`require_valid` first; the data build and ``alignops data validate`` call
:func:`validate_dataset` to produce a report they can log (``report.to_dict()``) and print (``report.format()``).

What is validated: a ``data_dir`` with one folder per set, each holding UTF-8 JSONL split files. Each set's
contract is in alignops.data.contracts (:data:`CONTRACTS`); the GX suite of a split is built from it and a
:class:`ValidationBounds` (alignops.data.expectations) and run by alignops.data.suites; the report's types are in
alignops.data.validation_report. Row numbers in reports are 1-based line numbers of the JSONL file
(``corpus/train.jsonl:7``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from alignops.data.contracts import CONTRACTS, Leak, SetContract, ValidationBounds, held_out_values, leaks_of
from alignops.data.suites import LoadedSplit, build_docs, gx_context, read_split, run_suite
from alignops.data.validation_report import (
    EXPECT_FOLDER,
    DataValidationError,
    Failure,
    SuiteResult,
    ValidationReport,
)

__all__ = [
    "CONTRACTS",
    "DataValidationError",
    "Failure",
    "Leak",
    "SetContract",
    "SuiteResult",
    "ValidationBounds",
    "ValidationReport",
    "leaks_of",
    "require_valid",
    "validate_dataset",
]

_FIX_HINT = "Fix: rebuild with `alignops data build` or repair the named rows"


def validate_dataset(
    data_dir: Path | str,
    bounds: ValidationBounds = ValidationBounds(),  # noqa: B008 - frozen, safe as a default
    docs_dir: Path | str | None = None,
    sets: Iterable[str] | None = None,
) -> ValidationReport:
    """Validate every split of every set (default: all of CONTRACTS) under ``data_dir``.

    Missing folders/files and non-JSON lines are failures in the report, never
    exceptions. With ``docs_dir``, GX data docs are written there (``index.html``).
    """
    started = time.perf_counter()
    data_dir = Path(data_dir)
    names = list(CONTRACTS) if sets is None else list(sets)
    unknown = sorted(set(names) - set(CONTRACTS))
    if unknown:
        raise ValueError(f"unknown data sets {unknown}; known: {sorted(CONTRACTS)}")

    results: list[SuiteResult] = []
    splits: dict[str, LoadedSplit] = {}
    for set_name in names:
        folder = data_dir / set_name
        if not folder.is_dir():
            fail = Failure(set_name, None, EXPECT_FOLDER, f"set folder {folder} does not exist")
            results.append(SuiteResult(set_name, set_name, 0, 1, [fail]))
            continue
        for split in CONTRACTS[set_name].splits:
            loaded = read_split(data_dir, set_name, split, CONTRACTS[set_name])
            splits[loaded.dataset] = loaded

    # Leakage references may live in a set that was not requested (eval_prompts vs sft); one per (column, split).
    references: dict[tuple[str, str], frozenset[str]] = {}
    for leak in (leak for s in names for leak in leaks_of(s)):
        if (leak.column, leak.reference) in references:
            continue
        ref_set, ref_split = leak.reference.split("/")
        ref = splits.get(leak.reference)
        if ref is None and (data_dir / ref_set).is_dir():
            ref = read_split(data_dir, ref_set, ref_split, CONTRACTS[ref_set])
        if ref is not None and ref.frame is not None and leak.column in ref.frame:
            frame = ref.frame
            # Still needed: the dashboard's rankings are human labels collected on the eval prompts by design
            # (evaluation samples queued for ranking), and the feedback stage files some of them under train.
            if "source" in frame:
                from alignops.feedback.store import SOURCE as DASHBOARD

                frame = frame[frame["source"] != DASHBOARD]
            values = (v for cell in frame[leak.column] for v in held_out_values(cell))
            references[(leak.column, leak.reference)] = frozenset(values)

    context = None
    if any(s.frame is not None for s in splits.values()):
        context = gx_context()
    for dataset, loaded in splits.items():
        if loaded.frame is None:
            results.append(SuiteResult(dataset, loaded.rel_path, 0, loaded.evaluated, loaded.failures))
            continue
        results.append(run_suite(context, loaded, bounds, references))

    results.sort(key=lambda r: names.index(r.dataset.split("/")[0]))  # stable: keeps split order
    docs_index = None
    if docs_dir is not None and context is not None:
        docs_index = build_docs(context, Path(docs_dir))
    return ValidationReport(str(data_dir), results, time.perf_counter() - started, docs_index)


def require_valid(
    data_dir: Path | str,
    bounds: ValidationBounds = ValidationBounds(),  # noqa: B008 - frozen, safe as a default
    docs_dir: Path | str | None = None,
    sets: Iterable[str] | None = None,
) -> ValidationReport:
    """Validate and raise :class:`DataValidationError` unless every expectation passed.

    Every stage calls this before it reads data; within one process (a pipeline run) files already found valid
    with the same bounds are not checked again (about 5 s a stage): any change to a file's size or modification
    time, or to the bounds, checks them again."""
    key = _fingerprint(data_dir, bounds, sets) if docs_dir is None else None
    if key is not None and key in _VALID:
        return _VALID[key]
    report = validate_dataset(data_dir, bounds, docs_dir=docs_dir, sets=sets)
    if not report.success:
        raise DataValidationError(f"{report.format()}\n\n{_FIX_HINT}", report)
    if key is not None:
        _VALID[key] = report
    return report


_VALID: dict[tuple, ValidationReport] = {}


def _fingerprint(data_dir: Path | str, bounds: ValidationBounds, sets: Iterable[str] | None) -> tuple:
    root = Path(data_dir).resolve()
    files = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*.jsonl")))
    return (str(root), bounds, None if sets is None else tuple(sets), files)

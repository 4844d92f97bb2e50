"""Running the Great Expectations suites: a split read into a frame (line numbers as its index), its suite run
in an ephemeral GX context, the failed expectations read back into the report, and GX data docs.

    context = gx_context()
    result = run_suite(context, read_split(data_dir, "sft", "train", CONTRACTS["sft"]), bounds, references)

With alignops.data.expectations, the only modules that import Great Expectations (lazily: importing GX costs
seconds). alignops.data.validation is the entry point.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alignops.data.contracts import CONTRACTS, SetContract, ValidationBounds
from alignops.data.expectations import build_expectations
from alignops.data.validation_report import (
    EXPECT_FILE,
    EXPECT_JSONL,
    EXPECT_VISIBLE,
    MAX_SAMPLES,
    Failure,
    SuiteResult,
    shorten,
)

# GX 1.24 no longer ships a usage-statistics client (only a docstring mentions this
# variable), but older 1.x releases read it on context creation; setting it keeps
# analytics off whichever 1.x is installed. setdefault: an explicit user choice wins.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

if TYPE_CHECKING:  # pandas/GX are imported lazily: importing GX costs seconds
    import pandas as pd


@dataclass
class LoadedSplit:
    dataset: str
    rel_path: str  # relative to data_dir, used in "file:line" references
    frame: pd.DataFrame | None  # None: file missing
    failures: list[Failure]
    evaluated: int  # pseudo-expectations evaluated while loading


def read_split(data_dir: Path, set_name: str, split: str, contract: SetContract) -> LoadedSplit:
    import pandas as pd

    dataset, rel = f"{set_name}/{split}", f"{set_name}/{split}.jsonl"
    path = data_dir / rel
    if not path.is_file():
        fail = Failure(dataset, None, EXPECT_FILE, f"split file {path} does not exist")
        return LoadedSplit(dataset, rel, None, [fail], 1)

    records: list[dict[str, Any]] = []
    line_numbers: list[int] = []
    bad: list[dict[str, Any]] = []
    raw_lines = path.read_bytes().split(b"\n")
    if raw_lines and raw_lines[-1] == b"":  # the final newline does not start a record
        raw_lines.pop()
    for number, raw in enumerate(raw_lines, start=1):
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            line = shorten(raw.decode("utf-8", errors="replace"))
            bad.append({"row": number, "value": f"{type(exc).__name__}: {exc}: {line}"})
            continue
        if not isinstance(record, dict):
            bad.append({"row": number, "value": f"not a JSON object: {shorten(record)}"})
            continue
        records.append(record)
        line_numbers.append(number)

    failures = []
    if bad:
        summary = f"{len(bad)} of {len(raw_lines)} lines of {path} are not JSON objects"
        failures.append(Failure(dataset, None, EXPECT_JSONL, summary, bad[:MAX_SAMPLES]))
    failures += _control_characters(dataset, path, records, line_numbers)
    # object dtype keeps the JSON values as Python objects (bool stays bool, ints are not
    # upcast, lists stay lists), so GX's type expectations check the JSON types.
    if records:
        frame = pd.DataFrame(records, dtype=object)
        frame.index = pd.Index(line_numbers)  # GX reports index values: these are line numbers
    else:  # keep the contract columns so an empty file fails only the row-count check
        frame = pd.DataFrame({c: pd.Series([], dtype=object) for c in contract.columns})
    return LoadedSplit(dataset, rel, frame, failures, 2)


def _control_characters(dataset: str, path: Path, records: list[dict], lines: list[int]) -> list[Failure]:
    """String fields holding a character that cleaning removes, e.g. an escaped \\u0000: the build never writes
    one, so a file that has one was written or edited by something else. Lists (a ranking's responses) are not
    looked into: the feedback loop adds model completions there as the model wrote them, which no cleaning
    touches."""
    from alignops.data.prepare import invisible_character

    found: dict[str, list[dict[str, Any]]] = {}
    for record, line in zip(records, lines, strict=True):
        for column, value in record.items():
            bad = invisible_character(value) if isinstance(value, str) else None
            if bad is not None:
                found.setdefault(column, []).append({"row": line, "value": f"U+{ord(bad):04X} in {shorten(value)}"})
    return [
        Failure(
            dataset,
            column,
            EXPECT_VISIBLE,
            f"{len(rows)} value(s) of {column} in {path} hold control/format characters that cleaning removes",
            rows[:MAX_SAMPLES],
        )
        for column, rows in found.items()
    ]


def _exception_message(info: Any) -> str | None:
    """GX nests exception_info per metric in some paths; find the first raised one."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message"))
    return None


def _display(
    frame: pd.DataFrame, row: Any, column: str | None, value: Any, helpers: Mapping[str, tuple[str, ...]]
) -> str:
    """What to show for an offending row: the value, or for helpers their source fields."""
    if column in helpers and row in frame.index:
        sources = helpers[column]
        return " ".join(f"{c}={shorten(frame.at[row, c])}" for c in sources) + f" ({column}={value!r})"
    return shorten(value)


def _failure(
    dataset: str, result: Any, frame: pd.DataFrame, helpers: Mapping[str, tuple[str, ...]], expected_columns: list[str]
) -> Failure:
    config = result.expectation_config
    column = config.kwargs.get("column")
    description = config.description or config.type
    res = dict(result.result or {})
    error = _exception_message(result.exception_info)
    samples: list[dict[str, Any]] = []
    if error is not None:
        summary = f"{description}; GX raised: {error}"
    elif "unexpected_count" in res:
        total = res.get("element_count", len(frame))
        summary = f"{description}; {res['unexpected_count']} of {total} rows unexpected"
        rows = res.get("partial_unexpected_index_list") or []
        values = res.get("partial_unexpected_list") or []
        for row, value in list(zip(rows, values, strict=False))[:MAX_SAMPLES]:
            row = int(row)
            samples.append({"row": row, "value": _display(frame, row, column, value, helpers)})
    elif config.type == "expect_table_columns_to_match_set":
        observed = [str(c) for c in res.get("observed_value") or []]
        missing = sorted(set(expected_columns) - set(observed))
        extra = sorted(set(observed) - set(expected_columns))
        summary = f"{description}; missing columns: {missing or 'none'}; unexpected columns: {extra or 'none'}"
    elif config.type == "expect_column_proportion_of_unique_values_to_be_between":
        observed = float(res.get("observed_value") or 0.0)
        summary = f"{description}; duplicate rate {1.0 - observed:.1%}"
        dup = frame[column][frame[column].map(lambda v: json.dumps(v, default=str)).duplicated(keep=False)]
        samples = [
            {"row": int(r), "value": _display(frame, r, column, v, helpers)} for r, v in dup.head(MAX_SAMPLES).items()
        ]
    else:
        summary = f"{description}; observed {res.get('observed_value')!r}"
    return Failure(dataset, column, config.type, summary, samples)


def gx_context() -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # Ephemeral: in-memory stores, nothing written unless data docs are requested.
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    context.data_sources.add_pandas("alignops")
    return context


def run_suite(
    context: Any, loaded: LoadedSplit, bounds: ValidationBounds, references: Mapping[tuple[str, str], frozenset[str]]
) -> SuiteResult:
    import great_expectations as gx

    set_name = loaded.dataset.split("/", 1)[0]
    frame = loaded.frame
    assert frame is not None
    expectations, helpers = build_expectations(loaded, set_name, CONTRACTS[set_name], bounds, references)
    name = loaded.dataset.replace("/", ".")
    asset = context.data_sources.get("alignops").add_dataframe_asset(name)
    batch = asset.add_batch_definition_whole_dataframe("all_rows")
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    validation = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    result = validation.run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": MAX_SAMPLES},
    )
    expected_columns = list(expectations[0].column_set)  # the schema expectation comes first
    failures = list(loaded.failures)
    failures += [_failure(loaded.dataset, r, frame, helpers, expected_columns) for r in result.results if not r.success]
    return SuiteResult(loaded.dataset, loaded.rel_path, len(frame), loaded.evaluated + len(result.results), failures)


def build_docs(context: Any, docs_dir: Path) -> str:
    """Render GX data docs of this run's suites and results into docs_dir."""
    docs_dir.mkdir(parents=True, exist_ok=True)
    # The ephemeral context's default site points at a throwaway temp dir; add one of ours.
    context.add_data_docs_site(
        "alignops",
        {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir.resolve())},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    context.build_data_docs(site_names=["alignops"])
    return str(docs_dir / "index.html")

"""The report of a validation run: one result per split, one failure per failed expectation, each naming the
dataset, the column and a few offending rows (1-based JSONL line numbers), as text and as JSON.

    report = validate_dataset(data_dir)      # alignops.data.validation
    print(report.format()); log(report.to_dict())
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alignops.errors import DataCheckFailed

MAX_SAMPLES = 5  # offending rows kept per failed expectation
VALUE_CHARS = 80  # offending values are truncated to this many characters in reports

# Pseudo-expectations for problems found before GX can run (named like GX types so a
# report reads uniformly).
EXPECT_FOLDER = "expect_set_folder_to_exist"
EXPECT_FILE = "expect_split_file_to_exist"
EXPECT_JSONL = "expect_lines_to_be_json_objects"
EXPECT_VISIBLE = "expect_strings_without_control_characters"
FILE_CHECKS = frozenset({EXPECT_FOLDER, EXPECT_FILE, EXPECT_JSONL})


@dataclass
class Failure:
    """One failed expectation.

    ``sample_rows`` holds up to MAX_SAMPLES ``{"row": line number, "value": str}``
    (value truncated; for helper columns it shows the source fields).
    """

    dataset: str
    column: str | None
    expectation: str
    summary: str
    sample_rows: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "column": self.column,
            "expectation": self.expectation,
            "summary": self.summary,
            "sample_rows": [dict(s) for s in self.sample_rows],
        }


@dataclass
class SuiteResult:
    """Outcome for one dataset ("<set>/<split>", or "<set>" when its folder is missing)."""

    dataset: str
    path: str
    rows: int
    evaluated: int
    failures: list[Failure] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "path": self.path,
            "rows": self.rows,
            "success": self.success,
            "evaluated": self.evaluated,
            "failed": len(self.failures),
            "failures": [f.to_dict() for f in self.failures],
        }


@dataclass
class ValidationReport:
    """All suite results of one :func:`validate_dataset` call."""

    data_dir: str
    results: list[SuiteResult]
    seconds: float = 0.0
    docs_index: str | None = None

    @property
    def success(self) -> bool:
        return all(r.success for r in self.results)

    @property
    def failures(self) -> list[Failure]:
        return [f for r in self.results for f in r.failures]

    def summary(self) -> str:
        failed = len(self.failures)
        evaluated = sum(r.evaluated for r in self.results)
        line = f"{failed} of {evaluated} expectations failed across {len(self.results)} datasets"
        bad = [r.dataset for r in self.results if not r.success]
        return f"{line} (failing: {', '.join(bad)})" if bad else line

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for MLflow / logs)."""
        return {
            "success": self.success,
            "data_dir": self.data_dir,
            "datasets": len(self.results),
            "evaluated": sum(r.evaluated for r in self.results),
            "failed": len(self.failures),
            "seconds": round(self.seconds, 3),
            "docs_index": self.docs_index,
            "summary": self.summary(),
            "results": [r.to_dict() for r in self.results],
        }

    def format(self) -> str:
        """Human-readable report: one block per failed expectation, then a summary line."""
        paths = {r.dataset: r.path for r in self.results}
        blocks = []
        for f in self.failures:
            col = f"column '{f.column}'" if f.column else "file" if f.expectation in FILE_CHECKS else "table"
            lines = [f"FAILED {f.dataset} | {col} | {f.expectation}", f"  {f.summary}"]
            for s in f.sample_rows:
                where = f"{paths.get(f.dataset, f.dataset)}:{s['row']}" if s.get("row") else "  -"
                lines.append(f"    {where}: {s['value']}")
            blocks.append("\n".join(lines))
        blocks.append(self.summary())
        return "\n\n".join(blocks)


class DataValidationError(DataCheckFailed, RuntimeError):
    """Raised when data fails its contract; ``.report`` holds the full report when known."""

    def __init__(self, message: str, report: ValidationReport | None = None) -> None:
        super().__init__(message)
        self.report = report


def shorten(value: Any, limit: int = VALUE_CHARS) -> str:
    """Truncated repr (quotes keep whitespace-only strings visible); always a str, so JSON-safe."""
    if isinstance(value, list):  # truncate each element so every response stays visible
        items = [shorten(v, limit // 2) for v in value[:MAX_SAMPLES]]
        return "[" + ", ".join(items + (["…"] if len(value) > MAX_SAMPLES else [])) + "]"
    if value is None or (isinstance(value, float) and value != value):  # NaN: the key was absent
        return "null/missing"
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f" ({len(value)} chars)" if isinstance(value, str) else ""
    return f"{text[:limit]}…{size}"

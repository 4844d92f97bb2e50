"""Data-contract validation of built datasets, via Great Expectations (GX 1.x).

This module is alignops' only adapter to Great Expectations. Every stage that reads
data calls :func:`require_valid` first; the data build calls :func:`validate_dataset`
to produce a report it can log (``report.to_dict()``) and print (``report.format()``).

What is validated: a ``data_dir`` with one folder per set (``corpus``, ``sft``,
``rankings``, ``classification``, ``eval_prompts``), each holding UTF-8 JSONL split
files. Each set has a small contract in :data:`CONTRACTS` (columns and JSON types,
which text columns have length bounds, allowed value sets, duplicate key, leakage
references); the GX expectation suite for a split is built from that contract plus a
:class:`ValidationBounds`. Rules GX has no built-in for (list-valued ranking fields,
membership in another split) are expressed as clearly named helper columns computed
in pandas (``ranking_is_permutation``, ``num_responses``, ``text_in_corpus_train``)
which are then checked with ordinary GX expectations, so the report and data docs
read the same way for every rule.

Run it directly::

    python -m alignops.data.validation DATA_DIR [--docs-dir DIR] [--json]

It prints the report and exits 1 when validation fails. Row numbers in reports are
1-based line numbers of the JSONL file (``corpus/train.jsonl:7``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alignops.data.datasets import EVAL_TASKS

# GX 1.24 no longer ships a usage-statistics client (only a docstring mentions this
# variable), but older 1.x releases read it on context creation; setting it keeps
# analytics off whichever 1.x is installed. setdefault: an explicit user choice wins.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from alignops.errors import DataCheckFailed

if TYPE_CHECKING:  # pandas/GX are imported lazily: importing GX costs seconds
    import pandas as pd

__all__ = [
    "CONTRACTS",
    "DataValidationError",
    "Failure",
    "SetContract",
    "SuiteResult",
    "ValidationBounds",
    "ValidationReport",
    "require_valid",
    "validate_dataset",
]

MAX_SAMPLES = 5  # offending rows kept per failed expectation
_VALUE_CHARS = 80  # offending values are truncated to this many characters in reports
_FIX_HINT = "Fix: rebuild with `alignops data build` or repair the named rows"

# Pseudo-expectations for problems found before GX can run (named like GX types so a
# report reads uniformly).
_EXPECT_FOLDER = "expect_set_folder_to_exist"
_EXPECT_FILE = "expect_split_file_to_exist"
_EXPECT_JSONL = "expect_lines_to_be_json_objects"
_EXPECT_VISIBLE = "expect_strings_without_control_characters"
LEAK_COLUMNS = ("prompt",)  # a held-out prompt of a prompt set must appear in no train split of any set
_FILE_CHECKS = frozenset({_EXPECT_FOLDER, _EXPECT_FILE, _EXPECT_JSONL})


@dataclass(frozen=True)
class ValidationBounds:
    """Numeric bounds and value sets the data contracts are checked against.

    Attributes:
        min_text_chars: minimum length of ``text`` (corpus, classification).
        max_text_chars: maximum length of ``text``.
        min_prompt_chars: minimum length of ``prompt`` (sft, rankings, eval_prompts).
        max_prompt_chars: maximum length of ``prompt``.
        min_response_chars: minimum length of an sft ``response`` and of every
            element of a ranking's ``responses``.
        max_response_chars: maximum length of those responses.
        max_duplicate_rate: largest allowed fraction of duplicate records per split,
            i.e. ``1 - unique/rows`` of the set's duplicate key (``text``,
            ``prompt+response``, ...).
        min_rows: every split must have at least this many records.
        min_responses: a ranking must compare at least this many responses (K).
        languages: allowed values of ``lang``.
        labels: allowed values of classification ``label``.
        eval_tasks: allowed values of an eval prompt's ``task``.
    """

    min_text_chars: int = 1
    max_text_chars: int = 20_000
    min_prompt_chars: int = 1
    max_prompt_chars: int = 4_000
    min_response_chars: int = 1
    max_response_chars: int = 8_000
    max_duplicate_rate: float = 0.01
    min_rows: int = 1
    min_responses: int = 2
    languages: tuple[str, ...] = ("en", "zh")
    labels: tuple[str, ...] = ("negative", "positive")
    eval_tasks: tuple[str, ...] = EVAL_TASKS

    def __post_init__(self) -> None:
        for kind in ("text", "prompt", "response"):
            lo, hi = self.chars(kind)
            if not 0 <= lo <= hi:
                raise ValueError(f"need 0 <= min_{kind}_chars <= max_{kind}_chars, got {lo}, {hi}")
        if not 0.0 <= self.max_duplicate_rate <= 1.0:
            raise ValueError(f"max_duplicate_rate must be in [0, 1], got {self.max_duplicate_rate}")

    def chars(self, kind: str) -> tuple[int, int]:
        """(min, max) characters for a length kind: "text", "prompt" or "response"."""
        return getattr(self, f"min_{kind}_chars"), getattr(self, f"max_{kind}_chars")


@dataclass(frozen=True)
class Leak:
    """Values of ``column`` must not occur in ``reference`` ("<set>/<split>", same column)."""

    column: str
    reference: str
    splits: tuple[str, ...]  # splits of the owning set that are checked

    @property
    def helper(self) -> str:
        return f"{self.column}_in_{self.reference.replace('/', '_')}"


@dataclass(frozen=True)
class SetContract:
    """The data contract of one set; the GX suite of each split is built from it.

    ``columns`` maps every column to its JSON type as GX's type expectations name it
    ("str", "bool", "list"; a tuple means any of these). String columns without an
    allowed-value set must also contain a non-whitespace character.
    """

    splits: tuple[str, ...]
    columns: Mapping[str, str | tuple[str, ...]]
    nullable: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()  # columns a record may leave out (must be nullable too)
    lengths: Mapping[str, str] = field(default_factory=dict)  # column -> ValidationBounds.chars kind
    allowed: Mapping[str, str] = field(default_factory=dict)  # column -> ValidationBounds attribute
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # numeric column -> [lo, hi]
    duplicate_key: tuple[str, ...] = ()  # (near-)unique record key, for the duplicate rate
    leaks: tuple[Leak, ...] = ()
    rankings: bool = False  # list-valued ranking rules (helper columns), see _ranking_helpers
    bio_tags: bool = False  # per-character BIO tag rules (helper column), see _bio_helpers


_SPLITS = ("train", "val", "test")

CONTRACTS: dict[str, SetContract] = {
    "corpus": SetContract(
        splits=_SPLITS,
        columns={"text": "str", "source": "str", "lang": "str"},
        lengths={"text": "text"},
        allowed={"lang": "languages"},
        duplicate_key=("text",),
        leaks=(Leak("text", "corpus/train", ("val", "test")),),
    ),
    "sft": SetContract(
        splits=_SPLITS,
        # messages: an imported chat, kept as turns (the template renders it at training); prompt/response
        # are its last user and assistant turns
        columns={"prompt": "str", "response": "str", "source": "str", "derived": "bool", "messages": "list"},
        nullable=frozenset({"messages"}),
        optional=frozenset({"messages"}),
        lengths={"prompt": "prompt", "response": "response"},
        duplicate_key=("prompt", "response"),
    ),
    "rankings": SetContract(
        splits=_SPLITS,
        columns={
            "prompt": "str",
            "responses": "list",
            "ranking": "list",
            "annotator": "str",
            "source": "str",
            "derived": "bool",
            "agreement": ("float", "int"),  # JSON may write 1.0 as 1
        },
        nullable=frozenset({"agreement"}),
        lengths={"prompt": "prompt"},
        ranges={"agreement": (0.0, 1.0)},
        # The annotator is part of the key: one record per annotator is legitimate.
        duplicate_key=("prompt", "responses", "annotator"),
        rankings=True,
    ),
    "classification": SetContract(
        splits=_SPLITS,
        columns={"text": "str", "label": "str", "source": "str", "lang": "str"},
        lengths={"text": "text"},
        allowed={"label": "labels", "lang": "languages"},
        duplicate_key=("text",),
        leaks=(Leak("text", "classification/train", ("val", "test")),),
    ),
    "eval_prompts": SetContract(
        splits=("test",),
        columns={"prompt": "str", "source": "str", "lang": "str", "task": "str"},
        lengths={"prompt": "prompt"},
        allowed={"lang": "languages", "task": "eval_tasks"},
        duplicate_key=("prompt",),
        leaks=(Leak("prompt", "sft/train", ("test",)),),
    ),
    "ner": SetContract(
        splits=_SPLITS,
        columns={"text": "str", "tags": "list", "source": "str"},
        lengths={"text": "text"},
        duplicate_key=("text",),
        leaks=(Leak("text", "ner/train", ("val", "test")),),
        bio_tags=True,
    ),
}


# --------------------------------------------------------------------------- report


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
            col = f"column '{f.column}'" if f.column else "file" if f.expectation in _FILE_CHECKS else "table"
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


# --------------------------------------------------------------------------- loading


@dataclass
class _Split:
    dataset: str
    rel_path: str  # relative to data_dir, used in "file:line" references
    frame: pd.DataFrame | None  # None: file missing
    failures: list[Failure]
    evaluated: int  # pseudo-expectations evaluated while loading


def _short(value: Any, limit: int = _VALUE_CHARS) -> str:
    """Truncated repr (quotes keep whitespace-only strings visible); always a str, so JSON-safe."""
    if isinstance(value, list):  # truncate each element so every response stays visible
        items = [_short(v, limit // 2) for v in value[:MAX_SAMPLES]]
        return "[" + ", ".join(items + (["…"] if len(value) > MAX_SAMPLES else [])) + "]"
    if value is None or (isinstance(value, float) and value != value):  # NaN: the key was absent
        return "null/missing"
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f" ({len(value)} chars)" if isinstance(value, str) else ""
    return f"{text[:limit]}…{size}"


def _load_split(data_dir: Path, set_name: str, split: str, contract: SetContract) -> _Split:
    import pandas as pd

    dataset, rel = f"{set_name}/{split}", f"{set_name}/{split}.jsonl"
    path = data_dir / rel
    if not path.is_file():
        fail = Failure(dataset, None, _EXPECT_FILE, f"split file {path} does not exist")
        return _Split(dataset, rel, None, [fail], 1)

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
            line = _short(raw.decode("utf-8", errors="replace"))
            bad.append({"row": number, "value": f"{type(exc).__name__}: {exc}: {line}"})
            continue
        if not isinstance(record, dict):
            bad.append({"row": number, "value": f"not a JSON object: {_short(record)}"})
            continue
        records.append(record)
        line_numbers.append(number)

    failures = []
    if bad:
        summary = f"{len(bad)} of {len(raw_lines)} lines of {path} are not JSON objects"
        failures.append(Failure(dataset, None, _EXPECT_JSONL, summary, bad[:MAX_SAMPLES]))
    failures += _control_characters(dataset, path, records, line_numbers)
    # object dtype keeps the JSON values as Python objects (bool stays bool, ints are not
    # upcast, lists stay lists), so GX's type expectations check the JSON types.
    if records:
        frame = pd.DataFrame(records, dtype=object)
        frame.index = pd.Index(line_numbers)  # GX reports index values: these are line numbers
    else:  # keep the contract columns so an empty file fails only the row-count check
        frame = pd.DataFrame({c: pd.Series([], dtype=object) for c in contract.columns})
    return _Split(dataset, rel, frame, failures, 2)


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
                found.setdefault(column, []).append({"row": line, "value": f"U+{ord(bad):04X} in {_short(value)}"})
    return [
        Failure(
            dataset,
            column,
            _EXPECT_VISIBLE,
            f"{len(rows)} value(s) of {column} in {path} hold control/format characters that cleaning removes",
            rows[:MAX_SAMPLES],
        )
        for column, rows in found.items()
    ]


def leaks_of(set_name: str) -> tuple[Leak, ...]:
    """The contract's own leak checks, plus, for a prompt set (prompts without responses, such as eval or
    rollout prompts), each held-out split's prompts against the train split of every set with prompts. Derived
    from CONTRACTS, so a set added there is covered without a line here."""
    contract = CONTRACTS[set_name]
    derived: list[Leak] = []
    is_prompt_set = not {"response", "responses"} & set(contract.columns)
    held_out = tuple(s for s in contract.splits if s != "train")
    for column in LEAK_COLUMNS:
        if not (is_prompt_set and held_out and column in contract.columns):
            continue
        for other, other_contract in CONTRACTS.items():
            if "train" in other_contract.splits and column in other_contract.columns:
                derived.append(Leak(column, f"{other}/train", held_out))
    own = {(leak.column, leak.reference) for leak in contract.leaks}
    return contract.leaks + tuple(leak for leak in derived if (leak.column, leak.reference) not in own)


# --------------------------------------------------------------------------- suites


def _flatten_ranking(ranking: Any) -> list[Any] | None:
    """Flatten a best-first ranking of indices / tie groups; None if malformed."""
    if not isinstance(ranking, list):
        return None
    flat: list[Any] = []
    for item in ranking:
        group = item if isinstance(item, list) else [item]
        if not group:  # an empty tie group is malformed
            return None
        flat.extend(group)
    return flat


def _is_permutation(ranking: list[Any], responses: list[Any]) -> bool:
    flat = _flatten_ranking(ranking)
    if flat is None:
        return False
    # bool is an int subclass; True is not a response index.
    if any(isinstance(i, bool) or not isinstance(i, int) for i in flat):
        return False
    return sorted(flat) == list(range(len(responses)))


def _ranking_helpers(
    frame: pd.DataFrame, bounds: ValidationBounds
) -> list[tuple[str, tuple[str, ...], list[Any], Any]]:
    """Helper columns for list-valued ranking rules: (name, sources, values, expectation).

    A helper is None where its source is not a list: GX map expectations skip nulls, and
    the type expectation on the source column already names that row.
    """
    import great_expectations.expectations as gxe

    responses = list(frame["responses"]) if "responses" in frame else None
    ranking = list(frame["ranking"]) if "ranking" in frame else None
    helpers: list[tuple[str, tuple[str, ...], list[Any], Any]] = []
    if responses is not None:
        lists = [r if isinstance(r, list) else None for r in responses]
        strs = [[s for s in r if isinstance(s, str)] if r is not None else [] for r in lists]
        lo, hi = bounds.chars("response")
        helpers += [
            (
                "num_responses",
                ("responses",),
                [len(r) if r is not None else None for r in lists],
                gxe.ExpectColumnValuesToBeBetween(
                    column="num_responses",
                    min_value=bounds.min_responses,
                    description=f"a ranking compares at least {bounds.min_responses} responses",
                ),
            ),
            (
                "responses_are_nonblank_strings",
                ("responses",),
                [None if r is None else all(isinstance(s, str) and s.strip() for s in r) for r in lists],
                gxe.ExpectColumnValuesToBeInSet(
                    column="responses_are_nonblank_strings",
                    value_set=[True],
                    description="every response is a string with a non-whitespace character",
                ),
            ),
            (
                "shortest_response_chars",
                ("responses",),
                [min(map(len, s)) if s else None for s in strs],
                gxe.ExpectColumnValuesToBeBetween(
                    column="shortest_response_chars",
                    min_value=lo,
                    description=f"every response has at least {lo} characters",
                ),
            ),
            (
                "longest_response_chars",
                ("responses",),
                [max(map(len, s)) if s else None for s in strs],
                gxe.ExpectColumnValuesToBeBetween(
                    column="longest_response_chars",
                    max_value=hi,
                    description=f"every response has at most {hi} characters",
                ),
            ),
            (
                "responses_distinct",
                ("responses",),
                # chosen != rejected: a ranking between identical responses teaches nothing
                [None if r is None else len({json.dumps(s) for s in r}) == len(r) for r in lists],
                gxe.ExpectColumnValuesToBeInSet(
                    column="responses_distinct",
                    value_set=[True],
                    description="no two responses of a ranking are identical",
                ),
            ),
        ]
    if responses is not None and ranking is not None:
        helpers.append(
            (
                "ranking_is_permutation",
                ("ranking", "responses"),
                [
                    _is_permutation(rk, rs) if isinstance(rk, list) and isinstance(rs, list) else None
                    for rk, rs in zip(ranking, responses, strict=True)
                ],
                gxe.ExpectColumnValuesToBeInSet(
                    column="ranking_is_permutation",
                    value_set=[True],
                    description="ranking (indices and tie groups, flattened) is a permutation of range(len(responses))",
                ),
            )
        )
    return helpers


def _bio_helpers(frame: pd.DataFrame) -> list[tuple[str, tuple[str, ...], list[Any], Any]]:
    """One helper column naming what is wrong with each record's tags (alignops.data.ner.bio_problems): one tag
    per character, every tag from the label set, every I-X continuing an X entity. "ok" when nothing is."""
    import great_expectations.expectations as gxe

    from alignops.data.ner import TAGS, bio_problems

    if "tags" not in frame or "text" not in frame:
        return []
    values = [
        ("; ".join(bio_problems(text, tags)) or "ok") if isinstance(text, str) and isinstance(tags, list) else None
        for text, tags in zip(frame["text"], frame["tags"], strict=True)
    ]
    expectation = gxe.ExpectColumnValuesToBeInSet(
        column="tag_problems",
        value_set=["ok"],
        description=f"one tag per character, each from {list(TAGS)}, every I-X continuing a B-X or I-X",
    )
    return [("tag_problems", ("text", "tags"), values, expectation)]


def _duplicate_key(frame: pd.DataFrame, key: tuple[str, ...]) -> list[str]:
    """One hashable string per row for a multi-column duplicate key."""
    columns = [list(frame[c]) for c in key]
    return [json.dumps(values, ensure_ascii=False, default=str) for values in zip(*columns, strict=True)]


def _build_expectations(
    split: _Split,
    set_name: str,
    contract: SetContract,
    bounds: ValidationBounds,
    references: Mapping[str, frozenset[str]],
) -> tuple[list[Any], dict[str, tuple[str, ...]]]:
    """GX expectations for one split; adds helper columns to ``split.frame`` in place.

    Returns the expectations and helper column -> source columns (for reports).
    Column-level expectations of a column absent from the file are skipped: they would
    only repeat the schema failure as "column not found" errors.
    """
    import great_expectations.expectations as gxe

    frame = split.frame
    assert frame is not None
    present = set(frame.columns)
    split_name = split.dataset.split("/", 1)[1]
    exps: list[Any] = [
        gxe.ExpectTableRowCountToBeBetween(
            min_value=bounds.min_rows, description=f"at least {bounds.min_rows} record(s)"
        )
    ]
    for col, type_ in contract.columns.items():
        if col not in present:
            continue
        if col not in contract.nullable:
            exps.append(gxe.ExpectColumnValuesToNotBeNull(column=col, description=f"{col} is present"))
        if isinstance(type_, tuple):
            exps.append(
                gxe.ExpectColumnValuesToBeInTypeList(
                    column=col, type_list=list(type_), description=f"{col} is one of {type_}"
                )
            )
        else:
            exps.append(gxe.ExpectColumnValuesToBeOfType(column=col, type_=type_, description=f"{col} is {type_}"))
        if type_ == "str" and col not in contract.allowed:
            exps.append(
                gxe.ExpectColumnValuesToMatchRegex(
                    column=col, regex=r"\S", description=f"{col} is not empty or whitespace-only"
                )
            )
    for col, kind in contract.lengths.items():
        if col in present:
            lo, hi = bounds.chars(kind)
            exps.append(
                gxe.ExpectColumnValueLengthsToBeBetween(
                    column=col, min_value=lo, max_value=hi, description=f"{col} has {lo}..{hi} characters"
                )
            )
    for col, attr in contract.allowed.items():
        if col in present:
            allowed = list(getattr(bounds, attr))
            exps.append(
                gxe.ExpectColumnValuesToBeInSet(column=col, value_set=allowed, description=f"{col} is one of {allowed}")
            )
    for col, (lo_v, hi_v) in contract.ranges.items():
        if col in present:
            exps.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column=col, min_value=lo_v, max_value=hi_v, description=f"{col} is in [{lo_v}, {hi_v}]"
                )
            )

    # Helper columns (added after the schema columns were read off the file).
    helpers: dict[str, tuple[str, ...]] = {}

    def add_helper(name: str, sources: tuple[str, ...], values: list[Any]) -> None:
        import pandas as pd

        frame[name] = pd.Series(values, index=frame.index, dtype=object)
        helpers[name] = sources

    if contract.rankings:
        for name, sources, values, exp in _ranking_helpers(frame, bounds):
            add_helper(name, sources, values)
            exps.append(exp)

    if contract.bio_tags:
        for name, sources, values, exp in _bio_helpers(frame):
            add_helper(name, sources, values)
            exps.append(exp)

    # An empty split already fails the row count; rates over zero rows mean nothing.
    key = contract.duplicate_key if len(frame) else ()
    if key and all(c in present for c in key):
        key_col = key[0]
        if len(key) > 1:
            key_col = "_".join(key)
            add_helper(key_col, key, _duplicate_key(frame, key))
        rate = bounds.max_duplicate_rate
        exps.append(
            gxe.ExpectColumnProportionOfUniqueValuesToBeBetween(
                column=key_col,
                min_value=1.0 - rate,
                description=f"at most {rate:.1%} duplicate records by ({', '.join(key)})",
            )
        )

    for leak in leaks_of(set_name):
        ref = references.get(leak.reference)
        # A missing reference split is reported on its own; nothing to compare against.
        if split_name not in leak.splits or ref is None or leak.column not in present or not len(frame):
            continue
        # A helper flag rather than ExpectColumnValuesToNotBeInSet(value_set=<train values>):
        # a 54k-value set costs ~8 s per run in GX and bloats data docs to ~30 MB.
        add_helper(leak.helper, (leak.column,), [isinstance(v, str) and v in ref for v in frame[leak.column]])
        exps.append(
            gxe.ExpectColumnValuesToNotBeInSet(
                column=leak.helper,
                value_set=[True],
                description=f"{leak.column} does not occur in {leak.reference} (cross-split leakage)",
            )
        )

    # Schema last: it must list the helper columns that now live in the frame.
    expected = [c for c in contract.columns if c not in contract.optional or c in present] + list(helpers)
    exps.insert(
        0,
        gxe.ExpectTableColumnsToMatchSet(
            column_set=expected,
            exact_match=True,
            description=f"{set_name} records have exactly the fields {list(contract.columns)}",
        ),
    )
    return exps, helpers


# --------------------------------------------------------------------------- results


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
        return " ".join(f"{c}={_short(frame.at[row, c])}" for c in sources) + f" ({column}={value!r})"
    return _short(value)


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


# --------------------------------------------------------------------------- public API


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
    splits: dict[str, _Split] = {}
    for set_name in names:
        folder = data_dir / set_name
        if not folder.is_dir():
            fail = Failure(set_name, None, _EXPECT_FOLDER, f"set folder {folder} does not exist")
            results.append(SuiteResult(set_name, set_name, 0, 1, [fail]))
            continue
        for split in CONTRACTS[set_name].splits:
            loaded = _load_split(data_dir, set_name, split, CONTRACTS[set_name])
            splits[loaded.dataset] = loaded

    # Leakage references may live in a set that was not requested (eval_prompts vs sft).
    references: dict[str, frozenset[str]] = {}
    for leak in (leak for s in names for leak in leaks_of(s)):
        if leak.reference in references:
            continue
        ref_set, ref_split = leak.reference.split("/")
        ref = splits.get(leak.reference)
        if ref is None and (data_dir / ref_set).is_dir():
            ref = _load_split(data_dir, ref_set, ref_split, CONTRACTS[ref_set])
        if ref is not None and ref.frame is not None and leak.column in ref.frame:
            frame = ref.frame
            if "source" in frame:  # dashboard rankings are human labels collected on the eval prompts by design
                from alignops.feedback.store import SOURCE as DASHBOARD

                frame = frame[frame["source"] != DASHBOARD]
            references[leak.reference] = frozenset(v for v in frame[leak.column] if isinstance(v, str))

    context = None
    if any(s.frame is not None for s in splits.values()):
        context = _gx_context()
    for dataset, loaded in splits.items():
        if loaded.frame is None:
            results.append(SuiteResult(dataset, loaded.rel_path, 0, loaded.evaluated, loaded.failures))
            continue
        results.append(_run_suite(context, loaded, bounds, references))

    results.sort(key=lambda r: names.index(r.dataset.split("/")[0]))  # stable: keeps split order
    docs_index = None
    if docs_dir is not None and context is not None:
        docs_index = _build_docs(context, Path(docs_dir))
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


# --------------------------------------------------------------------------- GX plumbing


def _gx_context() -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # Ephemeral: in-memory stores, nothing written unless data docs are requested.
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    context.data_sources.add_pandas("alignops")
    return context


def _run_suite(
    context: Any, loaded: _Split, bounds: ValidationBounds, references: Mapping[str, frozenset[str]]
) -> SuiteResult:
    import great_expectations as gx

    set_name = loaded.dataset.split("/", 1)[0]
    frame = loaded.frame
    assert frame is not None
    expectations, helpers = _build_expectations(loaded, set_name, CONTRACTS[set_name], bounds, references)
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


def _build_docs(context: Any, docs_dir: Path) -> str:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Validate built alignops datasets against their contracts.")
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--docs-dir", type=Path, default=None, help="write GX data docs here")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    report = validate_dataset(args.data_dir, docs_dir=args.docs_dir)
    print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) if args.json else report.format())
    return 0 if report.success else 1


if __name__ == "__main__":
    sys.exit(main())

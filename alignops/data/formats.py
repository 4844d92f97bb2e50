"""The file formats a team's data comes in (JSONL, JSON, CSV, Parquet, a Hugging Face dataset folder), read
into records that each know where they are in their file, so every refusal names file, line (or record/row) and
field. Reading is the first step of `alignops data import` (data/imports.py); nothing here knows the contracts.

    records = read_records(Path("chats.jsonl"))   # [(Where, dict)], format from the suffix; raises ImportRefused
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignops.errors import DataError

FORMATS = ("jsonl", "json", "parquet", "csv", "hf")
_SUFFIX_FORMAT = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
OPTIONAL_FIELDS = ("source",)  # a field any shape may carry (an empty CSV cell of it: absent)
MAX_ERRORS = 20  # refusals listed per file before "... and N more"


class ImportRefused(DataError, ValueError):
    """Bad input: every problem named by file, line (or record/row) and field; nothing was written."""


@dataclass(frozen=True)
class Where:
    """Where a record is in its file: 'line 7' (JSONL, CSV), 'record 7' (JSON), 'row 7' (Parquet, HF)."""

    path: Path
    unit: str
    number: int

    def __str__(self) -> str:
        return f"{self.path}:{self.unit} {self.number}"


def detect_format(path: Path) -> str:
    if path.is_dir():
        if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
            return "hf"
        raise ImportRefused(f"{path} is a folder but not a Hugging Face dataset saved with save_to_disk.")
    fmt = _SUFFIX_FORMAT.get(path.suffix.lower())
    if fmt is None:
        raise ImportRefused(f"{path}: cannot tell the format from '{path.suffix}'. Pass --format, one of {FORMATS}.")
    return fmt


def _text(path: Path, max_record_bytes: int) -> str:
    data = path.read_bytes()
    if not data.strip():
        raise ImportRefused(f"{path} is empty: nothing to import.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ImportRefused(
            f"{path}:line {line}: byte 0x{data[exc.start]:02x} is not UTF-8. Re-save the file as UTF-8 "
            "(e.g. `iconv -f GB18030 -t UTF-8`)."
        ) from None
    return text.removeprefix("\ufeff")


def _too_big(where: Where, size: int, limit: int) -> str:
    return (
        f"{where}: the record is {size / 1e6:.1f} MB, over data.import_max_record_bytes={limit} "
        "(split it, or raise the limit)"
    )


def read_records(path: Path, fmt: str | None = None, max_record_bytes: int = 1_000_000) -> list[tuple[Where, dict]]:
    """Every record of the file with where it is; a record that is not an object, or is too big, is refused."""
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise ImportRefused(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if not path.exists():
        raise ImportRefused(f"{path} does not exist.")
    rows = list(_READERS[fmt](path, max_record_bytes))
    if not rows:
        raise ImportRefused(f"{path} holds no records: nothing to import.")
    errors = [f"{where}: not an object with named fields but {type(r).__name__}" for where, r in rows
              if not isinstance(r, dict)]  # fmt: skip
    for where, record in rows:
        size = len(json.dumps(record, ensure_ascii=False, default=str).encode())
        if isinstance(record, dict) and size > max_record_bytes:
            errors.append(_too_big(where, size, max_record_bytes))
    refuse(path, errors)
    return rows


def _read_jsonl(path: Path, limit: int) -> Iterator[tuple[Where, Any]]:
    errors = []
    for number, line in enumerate(_text(path, limit).split("\n"), start=1):
        if not line.strip():
            continue
        where = Where(path, "line", number)
        if len(line.encode()) > limit:
            errors.append(_too_big(where, len(line.encode()), limit))
            continue
        try:
            yield where, json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"{where}: not JSON ({exc.msg} at column {exc.colno})")
    refuse(path, errors)


def _read_json(path: Path, limit: int) -> Iterator[tuple[Where, Any]]:
    try:
        data = json.loads(_text(path, limit))
    except json.JSONDecodeError as exc:
        raise ImportRefused(f"{path}:line {exc.lineno}: not JSON ({exc.msg}).") from None
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
        data = next(iter(data.values()))  # {"data": [...]}, {"train": [...]}
    if not isinstance(data, list):
        raise ImportRefused(f"{path}: a JSON file must hold a list of records (or one key with a list).")
    for number, record in enumerate(data, start=1):
        yield Where(path, "record", number), record


def _read_csv(path: Path, limit: int) -> Iterator[tuple[Where, Any]]:
    csv.field_size_limit(max(limit * 2, 131072))
    reader = csv.DictReader(io.StringIO(_text(path, limit), newline=""))
    start = 2
    for row in reader:
        where = Where(path, "line", start)
        start = reader.line_num + 1
        if None in row:
            raise ImportRefused(f"{where}: more values than the header has columns.")
        yield where, {k: v for k, v in row.items() if v != "" or k not in OPTIONAL_FIELDS}


def _read_table(rows: list[dict], path: Path) -> Iterator[tuple[Where, Any]]:
    for number, record in enumerate(rows, start=1):
        yield Where(path, "row", number), record


def _read_parquet(path: Path, limit: int) -> Iterator[tuple[Where, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a damaged or non-Parquet file
        raise ImportRefused(f"{path}: not a readable Parquet file ({exc}).") from None
    yield from _read_table(table.to_pylist(), path)


def _read_hf(path: Path, limit: int) -> Iterator[tuple[Where, Any]]:
    try:
        from datasets import DatasetDict, load_from_disk
    except ImportError:
        raise ImportRefused(
            f"{path} is a Hugging Face dataset; reading it needs the `datasets` package: pip install 'alignops[hf]'."
        ) from None
    loaded = load_from_disk(str(path))
    if isinstance(loaded, DatasetDict):
        if len(loaded) != 1:
            raise ImportRefused(
                f"{path} holds the splits {list(loaded)}; import one: save it with `ds['train'].save_to_disk(...)`."
            )
        loaded = next(iter(loaded.values()))
    yield from _read_table(loaded.to_list(), path)


_READERS = {"jsonl": _read_jsonl, "json": _read_json, "csv": _read_csv, "parquet": _read_parquet, "hf": _read_hf}


def refuse(path: Path, errors: list[str]) -> None:
    """Raise ImportRefused naming every problem (the first MAX_ERRORS of them), if there is any."""
    if errors:
        more = f"\n  ... and {len(errors) - MAX_ERRORS} more" if len(errors) > MAX_ERRORS else ""
        raise ImportRefused(
            f"{path}: {len(errors)} problem(s); nothing was imported.\n  " + "\n  ".join(errors[:MAX_ERRORS]) + more
        )

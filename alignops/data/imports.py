"""A team's own data into the data contracts: read a file in the formats the field uses, recognise its shape
(TRL / Hugging Face conventions), refuse bad records by file, line and field, clean, deduplicate and split it
the way the build does, and add it to data/ all or nothing with a datasheet entry.

    records = read_records(Path("chats.jsonl"))                  # [(Where, dict)], format from the suffix
    plan = plan_import(Path("chats.jsonl"), "sft", data_dir, cfg.data)   # raises ImportRefused on bad input
    result = import_file(cfg, Path("chats.jsonl"), "sft")        # staged, validated, swapped, versioned

Shapes (after --map renames): prompt/completion (or prompt/response) and conversational `messages` become sft
records (a chat keeps its turns; the chat template renders them at training time); prompt/chosen/rejected become
a two-response ranking; unpaired prompt/completion/label become one ranking per prompt, the completions labeled
true tied above those labeled false (derived: nobody compared them); text/label become classification; a
prompt alone becomes an eval prompt (or a record of any other prompt-only set); text alone becomes corpus.
A record may also carry `source`. The original file is kept under DVC in data/imports/ with a manifest, so a
rebuild re-applies it without fetching anything.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from alignops import tracking
from alignops.config import DataConfig
from alignops.data import prepare, sources
from alignops.data.contracts import LABELS
from alignops.errors import DataError

FORMATS = ("jsonl", "json", "parquet", "csv", "hf")
_SUFFIX_FORMAT = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
IMPORTS_DIR = "imports"  # data/imports/: the imported files and the manifest that replays them
MANIFEST = "manifest.json"
OPTIONAL_FIELDS = ("source",)  # a field any shape may carry
MAX_ERRORS = 20  # refusals listed per file before "... and N more"
ROLES = ("system", "user", "assistant")
_TRUE = {"true", "1", "yes", "y", "t"}  # unpaired labels as CSV writes them
_FALSE = {"false", "0", "no", "n", "f"}


@dataclass(frozen=True)
class Shape:
    name: str
    fields: tuple[str, ...]  # exactly these (plus OPTIONAL_FIELDS)
    sets: tuple[str, ...]  # the contracts it can become; () = any prompt-only set
    example: str


SHAPES = (
    Shape("preference", ("prompt", "chosen", "rejected"), ("rankings",),
          '{"prompt": "...", "chosen": "...", "rejected": "..."}'),
    Shape("unpaired_preference", ("prompt", "completion", "label"), ("rankings",),
          '{"prompt": "...", "completion": "...", "label": true}'),
    Shape("prompt_completion", ("prompt", "completion"), ("sft",), '{"prompt": "...", "completion": "..."}'),
    Shape("prompt_response", ("prompt", "response"), ("sft",), '{"prompt": "...", "response": "..."}'),
    Shape("messages", ("messages",), ("sft",),
          '{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}'),
    Shape("text_label", ("text", "label"), ("classification",), '{"text": "...", "label": "positive"}'),
    Shape("prompt_only", ("prompt",), (), '{"prompt": "..."}'),
    Shape("text", ("text",), ("corpus",), '{"text": "..."}'),
)  # fmt: skip
_PROMPT_ONLY_SETS = ("eval_prompts", "rollout")  # the prompt-only contracts (rollout: once it exists)
SET_ALIASES = {"preferences": "rankings", "pairs": "rankings", "prompts": "eval_prompts"}


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


@dataclass
class ImportPlan:
    """What an import adds: the contract records per split, and the datasheet's account of it."""

    set_name: str
    shape: str
    records: dict[str, list[dict[str, Any]]]
    entry: dict[str, Any]


@dataclass(frozen=True)
class ImportResult:
    set_name: str
    shape: str
    data_version: str
    counts: dict[str, int]  # records added per split
    dropped: dict[str, int]  # reason -> records
    sha256: str
    run_id: str | None = None


@dataclass(frozen=True)
class ImportSpec:
    """One import as the manifest records it (enough to replay it on a rebuild)."""

    file: str  # path under data/imports/
    set_name: str
    format: str
    source: str
    mapping: dict[str, str] = field(default_factory=dict)
    split: str | None = None


# --------------------------------------------------------------------------- reading


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
    _refuse(path, errors)
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
    _refuse(path, errors)


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


def _refuse(path: Path, errors: list[str]) -> None:
    if errors:
        more = f"\n  ... and {len(errors) - MAX_ERRORS} more" if len(errors) > MAX_ERRORS else ""
        raise ImportRefused(
            f"{path}: {len(errors)} problem(s); nothing was imported.\n  " + "\n  ".join(errors[:MAX_ERRORS]) + more
        )


# --------------------------------------------------------------------------- shapes


def parse_mapping(text: str | None) -> dict[str, str]:
    """'prompt=question,response=answer' -> {"prompt": "question", "response": "answer"} (contract field = file's)."""
    mapping: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        target, sep, name = part.partition("=")
        if not sep or not target.strip() or not name.strip():
            raise ImportRefused(f"--map entry {part!r} is not FIELD=COLUMN (e.g. prompt=question).")
        mapping[target.strip()] = name.strip()
    return mapping


def _renamed(record: dict, mapping: dict[str, str]) -> dict:
    back = {name: target for target, name in mapping.items()}
    return {back.get(k, k): v for k, v in record.items()}


def _candidates(set_name: str | None) -> list[Shape]:
    if set_name is None:
        return list(SHAPES)
    return [s for s in SHAPES if set_name in s.sets or (not s.sets and set_name in _PROMPT_ONLY_SETS)]


def set_of(shape: Shape) -> str:
    """The set a shape becomes when --as is not given (a prompt alone: an eval prompt)."""
    return shape.sets[0] if shape.sets else _PROMPT_ONLY_SETS[0]


def infer_shape(first: dict, set_name: str | None, where: Where) -> Shape:
    """The shape whose fields the first record has most of; unknown (no shared field): refused with the shapes
    this set takes and the record itself."""
    candidates = _candidates(set_name) or [contract_shape(set_name)]  # a set no TRL shape becomes (NER)
    keys = set(first)
    best = max(candidates, key=lambda s: (len(keys & set(s.fields)), -len(s.fields)), default=None)
    if best is None or not keys & set(best.fields):
        known = "\n".join(f"    {s.name:<20} {s.example}  -> {', '.join(s.sets or _PROMPT_ONLY_SETS)}" for s in SHAPES)
        shown = json.dumps(first, ensure_ascii=False)
        target = f" for --as {set_name}" if set_name else ""
        raise ImportRefused(
            f"{where}: unknown shape{target}. The first record is:\n    {shown[:500]}\n"
            f"  Known shapes:\n{known}\n  Rename fields with --map (e.g. --map prompt=question,completion=answer)."
        )
    return best


def _check(record: dict, shape: Shape, where: Where, labels: tuple[str, ...]) -> list[str]:
    """What is wrong with one record of this shape, each naming its field."""
    errors = [f"{where}: field '{f}': missing" for f in shape.fields if f not in record]
    extra = sorted(set(record) - set(shape.fields) - set(OPTIONAL_FIELDS))
    errors += [f"{where}: field '{f}': not part of the {shape.name} shape {shape.fields} (drop it or --map it)"
               for f in extra]  # fmt: skip
    if errors or shape.name.endswith("_contract"):
        return errors
    for name in shape.fields:
        value = record[name]
        if name == "messages":
            errors += _check_messages(value, where)
        elif name == "label" and shape.name == "unpaired_preference":
            if _bool_label(value) is None:
                errors.append(f"{where}: field 'label': {value!r} is not true/false")
        elif name == "label":
            if str(value) not in labels:
                errors.append(f"{where}: field 'label': {value!r} is not one of {list(labels)}")
        elif not isinstance(value, str) or not value.strip():
            errors.append(f"{where}: field '{name}': must be non-empty text, got {_shown(value)}")
    if "source" in record and not (isinstance(record["source"], str) and record["source"].strip()):
        errors.append(f"{where}: field 'source': must be non-empty text, got {_shown(record['source'])}")
    if shape.name == "preference" and not errors and record["chosen"].strip() == record["rejected"].strip():
        errors.append(f"{where}: field 'rejected': equals 'chosen'; a preference needs two different responses")
    return errors


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)[:80]


def _check_messages(messages: Any, where: Where) -> list[str]:
    """Turns in order: an optional system turn, then user and assistant alternating, ending with assistant."""
    if not isinstance(messages, list) or not messages:
        return [f"{where}: field 'messages': must be a non-empty list of {{role, content}}, got {_shown(messages)}"]
    errors = []
    expected = "user"
    for i, turn in enumerate(messages):
        at = f"{where}: field 'messages[{i}]'"
        if not isinstance(turn, dict) or set(turn) != {"role", "content"}:
            errors.append(f"{at}: must be exactly {{role, content}}, got {_shown(turn)}")
            continue
        role, content = turn["role"], turn["content"]
        if not isinstance(content, str) or not content.strip():
            errors.append(f"{at}.content: must be non-empty text")
        if role == "system" and i == 0:
            continue
        if role not in ROLES:
            errors.append(f"{at}.role: {role!r} is not one of {ROLES}")
        elif role != expected:
            errors.append(f"{at}.role: '{role}' out of order, expected '{expected}' (system first, then user and "
                          "assistant alternating)")  # fmt: skip
        expected = "assistant" if role == "user" else "user"
    if not errors and messages[-1]["role"] != "assistant":
        errors.append(f"{where}: field 'messages': the last turn must be the assistant's (the response to learn)")
    return errors


def _bool_label(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


# --------------------------------------------------------------------------- into the contracts


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\x00")
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _contract_record(
    record: dict, shape: Shape, set_name: str, source: str, cfg: DataConfig
) -> tuple[dict | None, str]:
    """(contract record, split key) or (None, why it was dropped), cleaned as the build cleans."""
    clean = prepare.clean_text
    src = record.get("source") or source
    if shape.name == "messages":
        turns = [{"role": m["role"], "content": clean(m["content"])} for m in record["messages"]]
        if not all(t["content"] for t in turns):
            return None, "a turn is empty after cleaning"
        prompt = next(t["content"] for t in reversed(turns) if t["role"] == "user")
        out = {"prompt": prompt, "response": turns[-1]["content"], "source": src, "derived": False, "messages": turns}
        return (out, prompt) if prepare.detect_lang(prompt + out["response"]) else (None, "language not en/zh")
    if shape.name in ("prompt_completion", "prompt_response"):
        prompt, response = clean(record["prompt"]), clean(record.get("completion", record.get("response", "")))
        if not prompt or not response:
            return None, "empty after cleaning"
        out = {"prompt": prompt, "response": response, "source": src, "derived": False}
        return (out, prompt) if prepare.detect_lang(prompt + response) else (None, "language not en/zh")
    if shape.name == "preference":
        prompt, chosen, rejected = clean(record["prompt"]), clean(record["chosen"]), clean(record["rejected"])
        if not prompt or not chosen or not rejected:
            return None, "empty after cleaning"
        if chosen == rejected:
            return None, "chosen equals rejected after cleaning"
        # the better response is not always first (as the build's label-derived rankings)
        flip = int(prepare.content_hash(chosen + rejected)[0], 16) % 2
        out = {"prompt": prompt, "responses": [rejected, chosen] if flip else [chosen, rejected],
               "ranking": [1, 0] if flip else [0, 1], "annotator": src, "source": src, "derived": False,
               "agreement": None}  # fmt: skip
        return out, prompt + "\x00" + "\x00".join(sorted(out["responses"]))
    if shape.name in ("text_label", "text"):
        text = clean(record["text"])
        lang = prepare.detect_lang(text)
        if len(text) < cfg.min_chars:
            return None, f"shorter than data.min_chars={cfg.min_chars} after cleaning"
        if lang is None:
            return None, "language not en/zh"
        out = {"text": text, "label": str(record["label"]), "source": src, "lang": lang}
        if shape.name == "text":
            out.pop("label")
        return out, text
    if shape.name.endswith("_contract"):
        out = {k: clean(v) if isinstance(v, str) else v for k, v in record.items()} | {"source": src}
        return out, json.dumps({k: out[k] for k in shape.fields}, ensure_ascii=False, sort_keys=True)
    prompt = clean(record["prompt"])  # prompt_only
    if not prompt:
        return None, "empty after cleaning"
    out = {"prompt": prompt, "source": src}
    if "lang" in _contract_columns(set_name):
        out["lang"] = prepare.detect_lang(prompt) or "en"
    if "task" in _contract_columns(set_name):  # an imported prompt is an open request, which the judges measure
        out["task"] = "answer"  # (labeled questions belong in the classification set, scored by F1)
    return out, prompt


def _contract_columns(set_name: str) -> tuple[str, ...]:
    from alignops.data.validation import CONTRACTS

    return tuple(CONTRACTS[set_name].columns)


def contract_shape(set_name: str) -> Shape:
    """A set with no TRL counterpart (NER, once its contract exists) is imported in its own contract's fields."""
    from alignops.data.validation import CONTRACTS

    contract = CONTRACTS[set_name]
    fields = tuple(c for c in contract.columns if c not in OPTIONAL_FIELDS and c not in contract.optional)
    return Shape(f"{set_name}_contract", fields, (set_name,), json.dumps(dict.fromkeys(fields, "...")))


def _unpaired_rankings(rows: list[tuple[dict, str]], dropped: Counter) -> list[tuple[dict, str]]:
    """Unpaired labels to one ranking per prompt: the completions labeled true tied above those labeled false."""
    by_prompt: dict[tuple[str, str], list[tuple[str, bool]]] = defaultdict(list)
    for record, src in rows:
        completion = prepare.clean_text(record["completion"])
        prompt = prepare.clean_text(record["prompt"])
        if not prompt or not completion:
            dropped["empty after cleaning"] += 1
            continue
        by_prompt[(prompt, src)].append((completion, bool(_bool_label(record["label"]))))
    out = []
    for (prompt, src), labeled in by_prompt.items():
        good = list(dict.fromkeys(c for c, ok in labeled if ok))
        bad = [c for c in dict.fromkeys(c for c, ok in labeled if not ok) if c not in good]
        if not good or not bad:
            dropped["unpaired: the prompt has no completion of the other label"] += len(labeled)
            continue
        responses = good + bad
        tier = lambda idx: idx[0] if len(idx) == 1 else idx  # noqa: E731
        ranking = [tier(list(range(len(good)))), tier(list(range(len(good), len(responses))))]
        record = {"prompt": prompt, "responses": responses, "ranking": ranking, "annotator": src, "source": src,
                  "derived": True, "agreement": None}  # fmt: skip
        out.append((record, prompt + "\x00" + "\x00".join(sorted(responses))))
    return out


def dedup_text(set_name: str, record: dict) -> str:
    """The text a set is deduplicated on (as the build: sft on prompt and response)."""
    if set_name == "sft":
        return f"{record['prompt']}\n{record['response']}"
    if set_name == "rankings":
        return record["prompt"] + "\n" + "\n".join(record["responses"])
    return record.get("text") or record.get("prompt") or json.dumps(record, ensure_ascii=False, sort_keys=True)


def resolve_set(name: str) -> str:
    from alignops.data.validation import CONTRACTS

    set_name = SET_ALIASES.get(name, name)
    if set_name not in CONTRACTS:
        raise ImportRefused(f"--as {name}: no such set; the sets are {sorted(CONTRACTS)} (or {sorted(SET_ALIASES)}).")
    return set_name


def plan_import(
    path: Path,
    set_name: str | None,
    data_dir: Path,
    cfg: DataConfig,
    fmt: str | None = None,
    source: str | None = None,
    mapping: dict[str, str] | None = None,
    split: str | None = None,
    labels: tuple[str, ...] = LABELS,
) -> ImportPlan:
    """Read, check, clean, deduplicate (against itself and every split already in the set) and split a file.
    Raises ImportRefused, naming file, line and field, when any record is bad: all or nothing. set_name None:
    the set the file's shape becomes (messages: sft, prompt/chosen/rejected: rankings, ...)."""
    from alignops.data.validation import CONTRACTS

    set_name = resolve_set(set_name) if set_name else None
    fmt = fmt or detect_format(path)
    source = source or f"import/{path.stem}"
    mapping = mapping or {}
    rows = [(where, _renamed(r, mapping)) for where, r in read_records(path, fmt, cfg.import_max_record_bytes)]
    shape = infer_shape(rows[0][1], set_name, rows[0][0])
    set_name = set_name or set_of(shape)
    splits = CONTRACTS[set_name].splits
    if split is not None and split not in splits:
        raise ImportRefused(f"--split {split}: the {set_name} set has the splits {list(splits)}.")
    _refuse(path, [e for where, r in rows for e in _check(r, shape, where, labels)])

    dropped: Counter[str] = Counter()
    if shape.name == "unpaired_preference":
        converted = _unpaired_rankings([(r, r.get("source") or source) for _, r in rows], dropped)
    else:
        converted = []
        for _, record in rows:
            out, key = _contract_record(record, shape, set_name, source, cfg)
            if out is None:
                dropped[key] += 1
            else:
                converted.append((out, key))

    existing = [r for s in splits for r in _existing(data_dir, set_name, s)]
    marked = [(True, r, "") for r in existing] + [(False, r, k) for r, k in converted]
    kept, stats = prepare.deduplicate(
        marked, lambda m: dedup_text(set_name, m[1]), cfg.near_dup_threshold, cfg.minhash_perms, cfg.shingle_chars
    )
    new = [(r, k) for is_old, r, k in kept if not is_old]
    duplicates = len(converted) - len(new)
    if duplicates:
        dropped["duplicate of a record in the file or already in the set"] += duplicates
    records: dict[str, list[dict]] = {s: [] for s in splits}
    mix = cfg.mix_weights()
    for record, key in new:
        target = split or (splits[0] if len(splits) == 1 else
                           prepare.split_of(key, cfg.split_salt, cfg.val_fraction, cfg.test_fraction))  # fmt: skip
        if target == "train" and prepare.mixed_out(key, record["source"], mix):
            dropped[f"mix weight of {record['source']} (data.mix)"] += 1
            continue
        records[target].append(record)
    entry = {
        "file": path.name,
        "sha256": _sha256(path),
        "format": fmt,
        "shape": shape.name,
        "set": set_name,
        "source": source,
        "mapping": mapping,
        "split": split or "by content hash",
        "rows_read": len(rows),
        "rows_added": {s: len(v) for s, v in records.items()},
        "dropped": dict(sorted(dropped.items())),
        "dedup": {"exact_removed": stats.exact_removed, "near_removed": stats.near_removed},
    }
    return ImportPlan(set_name, shape.name, records, entry)


def _existing(data_dir: Path, set_name: str, split: str) -> list[dict]:
    path = data_dir / set_name / f"{split}.jsonl"
    return sources.read_jsonl(path) if path.is_file() else []


# --------------------------------------------------------------------------- into data/


def _append(copy: Path, plan: ImportPlan) -> None:
    for split, records in plan.records.items():
        path = copy / plan.set_name / f"{split}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8", newline="\n") as fh:
            for record in records:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def _keep_file(copy: Path, path: Path, plan: ImportPlan) -> str:
    """The original file under data/imports/<sha256 prefix>-<name> (DVC-tracked with the rest of data/)."""
    name = f"{plan.entry['sha256'][:12]}-{path.name}"
    target = copy / IMPORTS_DIR / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        shutil.copytree(path, target, dirs_exist_ok=True)
    else:
        shutil.copyfile(path, target)
    return f"{IMPORTS_DIR}/{name}"


def read_manifest(data_dir: Path) -> list[ImportSpec]:
    path = data_dir / IMPORTS_DIR / MANIFEST
    if not path.is_file():
        return []
    return [ImportSpec(**spec) for spec in json.loads(path.read_text(encoding="utf-8"))]


def _record_import(copy: Path, path: Path, plan: ImportPlan, spec: ImportSpec | None) -> None:
    """Manifest and datasheet: the file, its sha256, what was read, added and dropped, the new counts."""
    if spec is None:  # a new import (a replay is in the manifest already)
        kept = _keep_file(copy, path, plan)
        e = plan.entry
        spec = ImportSpec(kept, plan.set_name, e["format"], e["source"], e["mapping"], None if e["split"] ==
                          "by content hash" else e["split"])  # fmt: skip
        manifest = [*read_manifest(copy), spec]
        (copy / IMPORTS_DIR / MANIFEST).write_text(
            json.dumps([asdict(s) for s in manifest], ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )
    sheet_path = copy / "datasheet.json"
    sheet = json.loads(sheet_path.read_text(encoding="utf-8")) if sheet_path.is_file() else {}
    original = spec.file.split("/", 1)[1].split("-", 1)[1]  # <sha256 prefix>-<the name it was imported as>
    sheet.setdefault("imports", []).append({**plan.entry, "file": original, "kept_as": spec.file})
    sheet["counts"] = _counts(copy)
    sheet_path.write_text(json.dumps(sheet, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    md = copy / "datasheet.md"
    base = md.read_text(encoding="utf-8").split("\n## Imports\n")[0] if md.is_file() else "# Datasheet\n"
    md.write_text(base.rstrip("\n") + "\n" + imports_markdown(sheet), encoding="utf-8")


def _counts(data_dir: Path) -> dict[str, dict[str, int]]:
    from alignops.data.validation import CONTRACTS

    counts = {}
    for name, contract in CONTRACTS.items():
        if (data_dir / name).is_dir():
            counts[name] = {s: len(_existing(data_dir, name, s)) for s in contract.splits}
    return counts


def imports_markdown(sheet: dict[str, Any]) -> str:
    lines = ["", "## Imports", "", "Counts per set and split after the imports:", "",
             "| set | train | val | test |", "|---|---|---|---|"]  # fmt: skip
    for name, c in sheet.get("counts", {}).items():
        lines.append(f"| {name} | {c.get('train', 0)} | {c.get('val', 0)} | {c.get('test', 0)} |")
    lines += ["", "| file | sha256 | format | shape | set | source | read | added | dropped |",
              "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for e in sheet.get("imports", []):
        dropped = "; ".join(f"{why}: {n}" for why, n in e["dropped"].items()) or "none"
        added = ", ".join(f"{s}={n}" for s, n in e["rows_added"].items())
        lines.append(f"| {e['file']} | `{e['sha256']}` | {e['format']} | {e['shape']} | {e['set']} | "
                     f"{e['source']} | {e['rows_read']} | {added} | {dropped} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def import_file(
    cfg,
    path: Path,
    set_name: str | None,
    fmt: str | None = None,
    source: str | None = None,
    mapping: dict[str, str] | None = None,
    split: str | None = None,
    track: bool = True,
    replay: ImportSpec | None = None,
) -> ImportResult:
    """Plan the import, then add it to data/ through staging.update_data (every suite, cross-set leaks
    included, on a copy; swapped in only if all pass), and record the new version in data.dvc."""
    from alignops.data import staging, versioning
    from alignops.stages.data import bounds

    data_dir = cfg.data.data_dir
    if not data_dir.is_dir():
        raise ImportRefused(f"{data_dir} does not exist: run `alignops data build` (or `alignops data pull`) first.")
    plan = plan_import(path, set_name, data_dir, cfg.data, fmt, source, mapping, split, bounds(cfg).labels)
    refusal = (
        f"{path}: the data with this import fails its suites; nothing was imported and {data_dir} is unchanged.\n"
        "A leak means an imported text is already in another split (a test prompt imported for training): "
        "remove those records, or import without --split so the content hash places them."
    )
    staging.update_data(data_dir, lambda copy: (_append(copy, plan), _record_import(copy, path, plan, replay)),
                        bounds(cfg), refusal)  # fmt: skip
    added = {s: len(v) for s, v in plan.records.items()}
    if not track:  # a replay inside `data build`, which records the version itself
        return ImportResult(plan.set_name, plan.shape, "", added, plan.entry["dropped"], plan.entry["sha256"])

    with tracking.stage_run("data-import", cfg, cfg.data) as run:
        version = versioning.track(data_dir)
        # lineage: every model trained on this data version leads back here, to the file's sha256
        run.set_tags({tracking.DATA_VERSION_TAG: version, tracking.IMPORT_SHA256_TAG: plan.entry["sha256"],
                      tracking.IMPORT_FILE_TAG: path.name, tracking.IMPORT_SET_TAG: plan.set_name})  # fmt: skip
        run.log_metrics({f"import/added_{s}": n for s, n in added.items()} | {"import/read": plan.entry["rows_read"]})
        run.log_artifact(data_dir / "datasheet.md", "datasheet")
        run.log_artifact(data_dir / "datasheet.json", "datasheet")
    entry = plan.entry
    return ImportResult(plan.set_name, plan.shape, version, added, entry["dropped"], entry["sha256"], run.run_id)


def replay(cfg, snapshot: Path) -> list[ImportResult]:
    """Re-apply the imports of a manifest (in `snapshot`, a copy of data/imports taken before a rebuild) onto a
    freshly built data/, in their order: the files are the ones kept under DVC, nothing is fetched."""
    results = []
    manifest = snapshot / MANIFEST
    if not manifest.is_file():
        return results
    target = cfg.data.data_dir / IMPORTS_DIR
    shutil.copytree(snapshot, target, dirs_exist_ok=True)
    for spec in read_manifest(cfg.data.data_dir):
        file = cfg.data.data_dir / spec.file
        results.append(
            import_file(cfg, file, spec.set_name, spec.format, spec.source, spec.mapping, spec.split, False, spec)
        )
    return results

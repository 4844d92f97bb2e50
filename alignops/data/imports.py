"""A team's own data into the data contracts: read a file (data/formats.py), recognise its shape and check
every record (data/shapes.py), clean, deduplicate and split it the way the build does, and add it to data/ all
or nothing with a datasheet entry.

    plan = plan_import(Path("chats.jsonl"), "sft", data_dir, cfg.data)   # raises ImportRefused on bad input
    result = import_file(cfg, Path("chats.jsonl"), "sft")        # staged, validated, swapped, versioned

The original file is kept under DVC in data/imports/ with a manifest, so a rebuild re-applies it (`replay`)
without fetching anything.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from alignops import tracking
from alignops.config import DataConfig
from alignops.data import prepare, sources
from alignops.data.contracts import LABELS
from alignops.data.formats import ImportRefused, detect_format, read_records, refuse
from alignops.data.shapes import check_record, convert_record, infer_shape, rank_unpaired, rename_fields, set_of

IMPORTS_DIR = "imports"  # data/imports/: the imported files and the manifest that replays them
MANIFEST = "manifest.json"
SET_ALIASES = {"preferences": "rankings", "pairs": "rankings", "prompts": "eval_prompts"}


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


# --------------------------------------------------------------------------- into the contracts


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\x00")
        digest.update(file.read_bytes())
    return digest.hexdigest()


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
    rows = [(where, rename_fields(r, mapping)) for where, r in read_records(path, fmt, cfg.import_max_record_bytes)]
    shape = infer_shape(rows[0][1], set_name, rows[0][0])
    set_name = set_name or set_of(shape)
    splits = CONTRACTS[set_name].splits
    if split is not None and split not in splits:
        raise ImportRefused(f"--split {split}: the {set_name} set has the splits {list(splits)}.")
    refuse(path, [e for where, r in rows for e in check_record(r, shape, where, labels)])

    dropped: Counter[str] = Counter()
    if shape.name == "unpaired_preference":
        converted = rank_unpaired([(r, r.get("source") or source) for _, r in rows], dropped)
    else:
        converted = []
        for _, record in rows:
            out, key = convert_record(record, shape, set_name, source, cfg)
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

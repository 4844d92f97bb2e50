"""Any set out of data/ in TRL's dataset conventions, so what is built, imported or labeled here (the dashboard's
rankings included) trains elsewhere too.

    paths = export_set(Path("data"), "rankings", "parquet", Path("out"))   # out/rankings/{train,val,test}.parquet

    sft             prompt/completion (TRL prompt-completion); conversational `messages` when the set holds chats
    rankings        prompt/chosen/rejected (TRL preference): every ordered pair a ranking implies, ties give none
    classification  text/label
    eval_prompts    prompt (TRL prompt-only)
    corpus          text (TRL language modeling)
Every record keeps its `source`. Formats: jsonl (one file per split), parquet (one per split), hf (a
DatasetDict saved with save_to_disk, read back with datasets.load_from_disk).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alignops.data import sources
from alignops.data.preferences import expand_rankings
from alignops.errors import DataError

EXPORT_FORMATS = ("jsonl", "parquet", "hf")


class ExportError(DataError, ValueError):
    """The set or format asked for does not exist; nothing was written."""


def trl_records(set_name: str, records: list[dict[str, Any]], conversational: bool) -> list[dict[str, Any]]:
    """One split's contract records in TRL's conventions."""
    if set_name == "sft":
        if conversational:
            return [{"messages": r.get("messages") or [{"role": "user", "content": r["prompt"]},
                                                       {"role": "assistant", "content": r["response"]}],
                     "source": r["source"]} for r in records]  # fmt: skip
        return [{"prompt": r["prompt"], "completion": r["response"], "source": r["source"]} for r in records]
    if set_name == "rankings":
        pairs = expand_rankings(records, weight_by=None)
        return [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected, "source": p.source} for p in pairs]
    if set_name == "classification":
        return [{"text": r["text"], "label": r["label"], "source": r["source"]} for r in records]
    if set_name in ("eval_prompts", "rollout_prompts"):
        return [{"prompt": r["prompt"], "source": r["source"]} for r in records]
    if set_name == "corpus":
        return [{"text": r["text"], "source": r["source"]} for r in records]
    return [dict(r) for r in records]  # a set without a TRL counterpart (ner) as its contract has it


def export_set(data_dir: Path, set_name: str, fmt: str, out_dir: Path, source: str | None = None) -> dict[str, Path]:
    """Write every split of one set under out_dir/<set> (only the records of `source` if given, e.g. "dashboard"
    for the labels collected here); returns split -> path written."""
    from alignops.data.validation import CONTRACTS

    if set_name not in CONTRACTS or not (data_dir / set_name).is_dir():
        present = [s for s in CONTRACTS if (data_dir / s).is_dir()]
        raise ExportError(f"No set {set_name!r} in {data_dir}; it holds {present}.")
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; known: {', '.join(EXPORT_FORMATS)}")
    splits = {s: sources.read_jsonl(data_dir / set_name / f"{s}.jsonl") for s in CONTRACTS[set_name].splits}
    if source is not None:
        splits = {s: [r for r in records if r.get("source") == source] for s, records in splits.items()}
    conversational = any(r.get("messages") for rows in splits.values() for r in rows)
    rows = {s: trl_records(set_name, records, conversational) for s, records in splits.items()}
    target = out_dir / set_name
    target.mkdir(parents=True, exist_ok=True)
    if fmt == "hf":
        try:
            from datasets import Dataset, DatasetDict
        except ImportError:
            raise ExportError("--format hf needs the `datasets` package: pip install 'alignops[hf]'.") from None
        # an empty split is left out: datasets (5.2) saves it with no shards and then cannot load the dict back
        parts = {s: Dataset.from_list(r) for s, r in rows.items() if r}
        if not parts:
            raise ExportError(f"{data_dir / set_name} holds no records{f' of source {source}' if source else ''}.")
        DatasetDict(parts).save_to_disk(str(target))
        return dict.fromkeys(parts, target)
    written = {}
    for split, records in rows.items():
        path = target / f"{split}.{fmt}"
        if fmt == "jsonl":
            with path.open("w", encoding="utf-8", newline="\n") as fh:
                fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(records), path)
        written[split] = path
    return written

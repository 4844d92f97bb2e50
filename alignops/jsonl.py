"""JSON Lines files: records written all or nothing, one JSON object per line, UTF-8 (non-ASCII kept as is).

write_jsonl([{"prompt": "Hi", "completion": "Hello"}], path)   # a temp sibling renamed over `path`
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_jsonl(records: list[dict[str, Any]], path: Path | str) -> Path:
    """Write records as UTF-8 JSONL, all or nothing (a temp file renamed over `path`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    tmp.replace(path)
    return path

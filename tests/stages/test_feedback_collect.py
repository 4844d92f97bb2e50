"""Dashboard rankings into the rankings data: counted against the data's watermark, corrections replace what
they supersede, the result validated and versioned; too few new labels change nothing."""

from __future__ import annotations

import json
from pathlib import Path

from alignops.config import load_config
from alignops.data import versioning
from alignops.feedback.store import Store
from alignops.stages import data
from alignops.stages.feedback import collect, watermark


def _dashboard_rows(data_dir: Path) -> list[dict]:
    rows = []
    for path in sorted((data_dir / "rankings").glob("*.jsonl")):
        records = map(json.loads, path.read_text(encoding="utf-8").splitlines())
        rows += [r for r in records if r["source"] == "dashboard"]
    return rows


def test_collect_counts_new_labels_and_corrections_replace(home: Path, dvc_repo: Path, source_cache: Path) -> None:
    cfg = load_config("tiny", [f"data.cache_dir={source_cache}", "data.val_fraction=0.25", "data.test_fraction=0.25",
                               "feedback.min_new_labels=2"])  # fmt: skip
    built = data.build(cfg).data_version
    store = Store()
    for version, word in (("1", "dull"), ("2", "bright")):
        samples = [{"sample_id": f"s{i}", "prompt": f"Describe room {i}.", "completion": f"A {word} room {i}."}
                   for i in range(3)]  # fmt: skip
        store.import_samples(f"models:/alignops-policy/{version}", samples)
    ana = store.add_annotator("ana", "a long enough password")
    first_task = store.next_task(ana.id, k=2)
    only = store.submit_ranking(ana.id, first_task.prompt_id, [[r.id] for r in first_task.responses], "t0")

    one = collect(cfg)  # one new ranking, two needed
    assert one.data_version is None and one.new_labels == 1 and "nothing to do" in one.message
    assert versioning.data_version() == built and _dashboard_rows(Path("data")) == []

    ids = {}
    while (task := store.next_task(ana.id, k=2)) is not None:
        ids[task.prompt_id] = store.submit_ranking(ana.id, task.prompt_id, [[r.id] for r in task.responses],
                                                   f"t{task.prompt_id}")  # fmt: skip
    added = collect(cfg)
    assert added.new_labels == 3 and added.total_labels == 3
    assert added.data_version == versioning.data_version() != built
    assert len(_dashboard_rows(Path("data"))) == 3 and watermark(Path("data"))["count"] == 3
    assert data.validate(cfg).success

    # a correction (ties the two responses) is one new label and replaces the ranking it supersedes
    store.submit_ranking(ana.id, first_task.prompt_id, [[r.id for r in first_task.responses]], "t0-fix",
                         supersedes=only)  # fmt: skip
    corrected = collect(load_config("tiny", [*cfg_overrides(cfg), "feedback.min_new_labels=1"]))
    rows = _dashboard_rows(Path("data"))
    assert corrected.new_labels == 1 and len(rows) == 3
    assert [[0, 1]] in [r["ranking"] for r in rows]
    store.close()


def cfg_overrides(cfg) -> list[str]:
    return [f"data.cache_dir={cfg.data.cache_dir}", "data.val_fraction=0.25", "data.test_fraction=0.25"]

"""The data recipe's mixing weights (data.mix): a content-hash share of a source's train records, for built,
imported and dashboard sources alike."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from alignops.config import DataConfig
from alignops.data import datasets, prepare


def test_mixed_out_keeps_a_stable_share_by_source_or_family() -> None:
    keys = [f"record {i}" for i in range(2000)]
    half = [k for k in keys if not prepare.mixed_out(k, "vader/tweets", {"vader": 0.5})]
    assert 900 <= len(half) <= 1100  # the family weight applies to "vader/tweets"
    assert half == [k for k in keys if not prepare.mixed_out(k, "vader/tweets", {"vader": 0.5})]  # same every build
    assert not any(prepare.mixed_out(k, "vader/tweets", {"vader/tweets": 1.0, "vader": 0.0}) for k in keys)  # exact
    assert all(prepare.mixed_out(k, "derived:sentiment/en", {"derived": 0.0}) for k in keys)
    assert not any(prepare.mixed_out(k, "dashboard", {"vader": 0.0}) for k in keys)  # not named: all kept


def test_build_keeps_the_recipes_share_of_a_built_source(source_cache: Path, tmp_path: Path) -> None:
    def build(mix: str) -> dict:
        cfg = DataConfig(data_dir=tmp_path / f"data-{mix or 'all'}", cache_dir=source_cache, mix=mix)
        datasets.build_datasets(cfg, source_cache)
        return {s: datasets.load_split(cfg.data_dir, s, "train") for s in ("corpus", "rankings")}

    full, mixed = build(""), build("vadersentiment=0")

    def families(records: list[dict]) -> Counter:
        return Counter(r["source"].replace(":", "/").split("/", 1)[0] for r in records)

    assert families(full["corpus"])["vadersentiment"] > 0 and families(mixed["corpus"])["vadersentiment"] == 0
    vader = Counter({"vadersentiment": families(full["corpus"])["vadersentiment"]})
    assert families(mixed["corpus"]) == families(full["corpus"]) - vader  # the other sources untouched
    held_out = datasets.load_split(tmp_path / "data-vadersentiment=0", "corpus", "test")  # only train splits are mixed
    assert families(held_out)["vadersentiment"] > 0

"""Each figure is a real PNG, written whole (no temp file left behind)."""

from __future__ import annotations

from pathlib import Path

from alignops.evaluation import figures

PNG = b"\x89PNG\r\n\x1a\n"


def test_every_figure_is_a_png(tmp_path: Path) -> None:
    paths = [
        figures.confusion_matrix([[5, 1, 2], [0, 7, 1]], ["negative", "positive"],
                                 ["negative", "positive", "unparseable"], tmp_path / "confusion.png"),
        figures.ppo_curves([(1, 0.1), (2, 0.4), (3, 0.5)], [(1, 0.0), (2, 0.3), (3, 0.6)], tmp_path / "ppo.png"),
        figures.length_distributions({"model": [3, 5, 8, 8], "baseline": [2, 2, 9]}, tmp_path / "lengths.png"),
        figures.reward_vs_judge({"model": ([0.2, -0.1], [0.5, 0.0]), "baseline": ([0.0], [0.1])},
                                tmp_path / "sub" / "scatter.png"),
    ]  # fmt: skip
    for path in paths:
        assert path.read_bytes().startswith(PNG), path
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == sorted(p.name for p in paths)

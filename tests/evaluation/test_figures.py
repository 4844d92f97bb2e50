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


def test_reward_against_kl_gives_each_of_six_arms_its_own_colour(tmp_path: Path, monkeypatch) -> None:
    saved = []
    monkeypatch.setattr(figures, "_save", lambda fig, path: saved.append(fig) or path)
    names = ["ppo seed 0", "ppo seed 1", "ppo seed 2", "grpo seed 0", "negated", "shuffled"]
    curves = {name: [(0.0, 0.0), (1.0, i / 10)] for i, name in enumerate(names)}
    rows = [{"name": name, "kl": 1.0 + i, "win_rate/vader": 0.5, "win_rate/afinn": 0.5} for i, name in enumerate(names)]
    figures.reward_against_kl(curves, rows, tmp_path / "fig.png")
    left, right = saved[0].axes
    lines = {line.get_label(): line.get_color() for line in left.get_lines()}
    assert len(set(lines.values())) == 6  # 6 arms, 6 colours
    points = {c.get_label(): tuple(c.get_facecolor()[0]) for c in right.collections}
    for name in names:  # an arm's held-out points wear its curve's colour
        assert points[f"{name} VADER"] == points[f"{name} AFINN"]
        assert points[f"{name} VADER"][:3] == matplotlib_rgb(lines[name])


def matplotlib_rgb(color: str) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    return to_rgb(color)

"""The evaluation's figures as PNG files (matplotlib, no display needed); the evaluate stage logs them under
figures/ in its MLflow run and the dashboard shows them.

    confusion_matrix([[40, 8, 2], [5, 45, 0]], ["negative", "positive"], ["negative", "positive", "unparseable"], p)
    ppo_curves([(1, 0.1), (2, 0.3)], [(1, 0.0), (2, 0.4)], p)
    length_distributions({"model": [12, 30], "baseline": [20, 21]}, p)
    reward_vs_judge({"model": ([0.3, -0.1], [0.5, 0.0])}, p)       # name -> (reward-model scores, judge scores)
    fewshot_curve(rows, p)        # accuracy and F1 by k (alignops.evaluation.fewshot.ShotScore rows)

Each function writes one PNG atomically (temp file, then rename) and returns its path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and in tests
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=120)
    _pyplot().close(fig)
    tmp.replace(path)
    return path


def confusion_matrix(
    matrix: Sequence[Sequence[int]], row_labels: Sequence[str], col_labels: Sequence[str], path: Path, title: str = ""
) -> Path:
    """Counts, true label by row, predicted by column (an extra 'unparseable' column for generative models)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.4 + 1.1 * len(col_labels), 1.2 + 0.9 * len(row_labels)))
    ax.imshow(matrix, cmap="Blues", aspect="auto")
    ax.set(
        xticks=range(len(col_labels)),
        yticks=range(len(row_labels)),
        xticklabels=col_labels,
        yticklabels=row_labels,
        xlabel="predicted",
        ylabel="true",
        title=title or "confusion matrix",
    )
    top = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(j, i, str(int(value)), ha="center", va="center", color="white" if value > top / 2 else "black")
    return _save(fig, path)


def ppo_curves(reward: Sequence[tuple[int, float]], kl: Sequence[tuple[int, float]], path: Path) -> Path:
    """The policy's training: mean reward and KL to the reference per PPO iteration, on two axes."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.5, 4.5), sharex=True)
    top.plot([s for s, _ in reward], [v for _, v in reward], marker="o", color=_COLORS[0])
    top.set(ylabel="reward (ppo/reward)", title="PPO training")
    bottom.plot([s for s, _ in kl], [v for _, v in kl], marker="o", color=_COLORS[1])
    bottom.set(ylabel="KL to reference (nats)", xlabel="iteration")
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    return _save(fig, path)


def length_distributions(lengths: Mapping[str, Sequence[int]], path: Path) -> Path:
    """Histograms of response lengths (tokens) on the eval prompts, one per model, overlaid."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    longest = max((max(v) for v in lengths.values() if v), default=1)
    bins = range(0, longest + 2, max(1, (longest + 1) // 30))  # at most about 30 bins
    for color, (name, values) in zip(_COLORS, lengths.items(), strict=False):
        mean = sum(values) / len(values) if values else float("nan")
        ax.hist(values, bins=bins, alpha=0.5, color=color, label=f"{name} (mean {mean:.1f})")
    ax.set(xlabel="response length (tokens)", ylabel="responses", title="response lengths on the eval prompts")
    ax.legend()
    return _save(fig, path)


def reward_vs_judge(points: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: Path) -> Path:
    """Reward-model score against the independent judge's score, one colour per model: reward hacking shows as
    points the reward model likes and the judge does not."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    for color, (name, (rewards, judged)) in zip(_COLORS, points.items(), strict=False):
        ax.scatter(judged, rewards, s=14, alpha=0.6, color=color, label=name)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set(xlabel="judge score (VADER / snownlp, -1..1)", ylabel="reward-model score", title="reward model vs judge")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def fewshot_curve(table: Sequence, path: Path, model: str = "") -> Path:
    """Accuracy and macro F1 by the number of in-context examples k, with their 95% intervals as error bars
    (table: alignops.evaluation.fewshot.ShotScore rows): whether showing examples helps the model."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ks = [row.k for row in table]
    for color, name in zip(_COLORS, ("accuracy", "f1"), strict=False):
        values = [getattr(row, name) for row in table]
        # a bootstrap interval of F1 need not contain the estimate (F1 is not a mean): clip the bars at it
        low = [max(0.0, v - getattr(row, f"{name}_low")) for v, row in zip(values, table, strict=True)]
        high = [max(0.0, getattr(row, f"{name}_high") - v) for v, row in zip(values, table, strict=True)]
        ax.errorbar(ks, values, yerr=[low, high], marker="o", capsize=3, color=color, label=name)
    ax.set(xticks=ks, xlabel="in-context examples (k)", ylabel="held-out classification", ylim=(0, 1),
           title=f"k-shot classification {model}".strip())  # fmt: skip
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def reward_against_kl(curves: Mapping[str, Sequence[tuple[float, float]]], rows: Sequence[Mapping], path: Path) -> Path:
    """The sentiment experiment: each arm's reward-model score against its KL to the SFT policy over training
    (left; ppo/reward and ppo/kl per iteration), and each arm's held-out judge win rate against its exact KL
    (right; rows of alignops.evaluation.continuations), the independent judge beside what was optimised."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    # one colour per arm (an arm's curve and its points share it): the 10 of matplotlib's cycle, as a full run has
    # 6 arms (4 colours gave the shuffled control the first seed's)
    color = {name: f"C{i % 10}" for i, name in enumerate(dict.fromkeys([*curves, *(r["name"] for r in rows)]))}
    for name, points in curves.items():
        left.plot([k for k, _ in points], [r for _, r in points], marker=".", color=color[name], label=name)
    left.set(xlabel="KL to SFT (nats, training)", ylabel="reward-model score (training)", title="over training")
    for row in rows:
        right.scatter(
            row["kl"], row.get("win_rate/vader", float("nan")), color=color[row["name"]], label=f"{row['name']} VADER"
        )
        right.scatter(
            row["kl"],
            row.get("win_rate/afinn", float("nan")),
            color=color[row["name"]],
            marker="x",
            label=f"{row['name']} AFINN",
        )
    right.axhline(0.5, color="grey", lw=0.5)
    right.set(xlabel="exact KL to SFT (nats, held out)", ylabel="judge win rate vs SFT", title="held-out prefixes")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)

"""What the sentiment-continuation experiment measures (Ziegler et al. 2019): one policy's sampled continuations
of held-out prefixes against the SFT policy's, both sampled with the same seeds, read by two independent judges,
the reward model, the exact KL and the reference model's perplexity; then the results table and the targets.

    rows = [arm_metrics(...), ...]                 # one dict per arm (policy x seed), see arm_metrics
    pairs = side_by_side(prompts, mine, sft, judges)   # what the win rates count, prefix by prefix, to read
    failed = missed_targets(rows)                  # [] when every target of issue 14 is met
    markdown = results_table(rows)

Pure functions of texts, scores and log-probs, so each is tested on hand-computed cases; the experiment's stage
(alignops.stages.sentiment) runs the models.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from alignops.evaluation.metrics import WinRate, win_rate, win_rate_of


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct-n (Li et al. 2016): unique word n-grams over all n-grams of all texts; 0 when there are none.
    Degenerate, repetitive continuations score low."""
    grams = [tuple(words[i : i + n]) for words in (t.split() for t in texts) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


@dataclass(frozen=True)
class Samples:
    """One model's continuations of the held-out prefixes (position i is prefix i), as the experiment measured them."""

    texts: list[str]
    lengths: list[int]  # tokens of each continuation
    reward: list[float]  # the reward model's score of each
    reference_nll: list[float]  # summed negative log-likelihood of each continuation under the SFT model, nats


def arm_metrics(
    policy: Samples, sft: Samples, judges: dict[str, Callable[[str], float]], kl: Sequence[float]
) -> dict[str, float]:
    """One arm against the SFT policy on the same prefixes, sampled with the same seeds.

    judges: name -> score of a text (higher = more positive); kl: the exact KL(policy || SFT) of each policy
    continuation, nats. Win rates count wins, losses and ties apart (metrics.WinRate); reference_ppl is the SFT
    model's perplexity of the continuations (exp of the token-weighted NLL), for the policy's and for its own."""
    if len(policy.texts) != len(sft.texts) or not policy.texts:
        raise ValueError(f"{len(policy.texts)} policy continuations against {len(sft.texts)} SFT ones")
    out: dict[str, float] = {}
    for name, judge in judges.items():
        mine, theirs = [judge(t) for t in policy.texts], [judge(t) for t in sft.texts]
        out |= win_rate(mine, theirs).as_metrics(f"win_rate/{name}")
        out[f"score/{name}"], out[f"score/{name}_sft"] = _mean(mine), _mean(theirs)
    out |= win_rate(policy.reward, sft.reward).as_metrics("win_rate/reward")
    out["score/reward"], out["score/reward_sft"] = _mean(policy.reward), _mean(sft.reward)
    out["kl"] = _mean(kl)
    for key, samples in (("reference_ppl", policy), ("reference_ppl_sft", sft)):
        out[key] = math.exp(sum(samples.reference_nll) / max(sum(samples.lengths), 1))
    out["length"], out["length_sft"] = _mean(policy.lengths), _mean(sft.lengths)
    out["distinct_2"], out["distinct_2_sft"] = distinct_n(policy.texts), distinct_n(sft.texts)
    return out


def side_by_side(
    prompts: Sequence[str], policy: Samples, sft: Samples, judges: dict[str, Callable[[str], float]]
) -> list[dict]:
    """Each held-out prefix with the policy's and the SFT policy's continuation and every score of both, one dict
    per prefix: the pairs arm_metrics' win rates count, for a person to read. A rate says how often the policy
    won; only the text says how (a lexicon reads "no, no, no, ..." as neutral, the reward model may not)."""
    if not len(prompts) == len(policy.texts) == len(sft.texts):
        raise ValueError(f"{len(prompts)} prefixes, {len(policy.texts)} policy and {len(sft.texts)} SFT continuations")
    out = []
    for i, (prompt, mine, theirs) in enumerate(zip(prompts, policy.texts, sft.texts, strict=True)):
        pair = {
            "prompt": prompt,
            "policy": mine,
            "sft": theirs,
            "reward": policy.reward[i],
            "reward_sft": sft.reward[i],
        }
        for name, judge in judges.items():
            pair[name], pair[f"{name}_sft"] = judge(mine), judge(theirs)
        out.append(pair)
    return out


def reward_judge_agreement(first: Samples, second: Samples, judge: Callable[[str], float]) -> WinRate:
    """How often the reward model orders two continuations of the same prefix (first[i], second[i], one model's
    independent samples) as the judge does: a "win" where it prefers the one the judge scores higher, a tie where it
    scores both alike; pairs the judge scores alike are left out (no order to agree with). RL against a reward
    whose agreement is 0.5 cannot move the judge, whatever else it does: the experiment's precondition."""
    outcomes = []
    for a, b, reward_a, reward_b in zip(first.texts, second.texts, first.reward, second.reward, strict=True):
        by_judge = judge(a) - judge(b)
        if by_judge != 0:
            outcomes.append(0.5 if reward_a == reward_b else float((reward_a > reward_b) == (by_judge > 0)))
    if not outcomes:  # the judge ordered no pair (byte noise has no sentiment words): no evidence, no rate
        return WinRate(0, 0, 0, None, 0.0, 1.0, 0.0, 1.0)
    return win_rate_of(outcomes)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


@dataclass(frozen=True)
class Target:
    """One of issue 14's targets: `metric` of the arms of `arm` kind compared with `bound`."""

    arm: str  # "main" (the RL method under test), "second" (GRPO beside PPO), "negated", "shuffled"
    description: str
    check: Callable[[dict[str, float]], bool]


def _ratio(row: dict[str, float], key: str) -> float:
    return row[key] / row[f"{key}_sft"] if row.get(f"{key}_sft") else float("nan")


PRIMARY_JUDGE, SECOND_JUDGE = "vader", "afinn"
TARGETS = (
    Target("main", "judge win rate >= 0.70", lambda r: r.get(f"win_rate/{PRIMARY_JUDGE}", 0) >= 0.70),
    Target("main", "judge win rate lower bound >= 0.65", lambda r: r.get(f"win_rate/{PRIMARY_JUDGE}_low", 0) >= 0.65),
    Target("main", "second judge win rate >= 0.62", lambda r: r.get(f"win_rate/{SECOND_JUDGE}", 0) >= 0.62),
    Target("main", "KL within 3-8 nats", lambda r: 3.0 <= r["kl"] <= 8.0),
    Target(
        "main",
        "reward-model win rate - judge win rate <= 0.15",
        lambda r: r.get("win_rate/reward", 1) - r.get(f"win_rate/{PRIMARY_JUDGE}", 0) <= 0.15,
    ),
    Target("main", "mean length within 20% of SFT's", lambda r: abs(_ratio(r, "length") - 1) <= 0.20),
    Target("main", "reference perplexity <= 2x SFT's", lambda r: r["reference_ppl"] <= 2 * r["reference_ppl_sft"]),
    # not one of the issue's: a policy that repeats one word the lexicons like ("excellent and excellent and ...")
    # wins by both judges and its reference perplexity falls; only the diversity of its text shows it
    Target("main", "distinct-2 >= 0.8x SFT's", lambda r: _ratio(r, "distinct_2") >= 0.8),
    Target("negated", "judge win rate <= 0.30", lambda r: r.get(f"win_rate/{PRIMARY_JUDGE}", 1) <= 0.30),
    # nor this one: negated arms run longer on earlier builds wrote "No, no, no, no, ..." (distinct-2 0.35 against
    # SFT's 0.76) or collapsed under an adaptive coefficient (0.11, VADER 0.26): a bound met by degenerate text is
    # no evidence that the reward steers the judge (docs/experiments/sentiment.md)
    Target("negated", "distinct-2 >= 0.8x SFT's", lambda r: _ratio(r, "distinct_2") >= 0.8),
    Target(
        "shuffled",
        "judge win-rate interval covers 0.5",
        lambda r: r.get(f"win_rate/{PRIMARY_JUDGE}_low", 1) <= 0.5 <= r.get(f"win_rate/{PRIMARY_JUDGE}_high", 0),
    ),
)


def missed_targets(rows: Sequence[dict]) -> list[str]:
    """Each target a row of its arm kind misses, as "<arm name>: <target>" ([] when all are met). A row carries
    "arm" (its kind) and "name" besides its metrics; an arm kind without rows misses its targets."""
    missed = []
    for target in TARGETS:
        mine = [r for r in rows if r["arm"] == target.arm]
        if not mine:
            missed.append(f"{target.arm}: {target.description} (no such arm was run)")
        missed += [f"{r['name']}: {target.description}" for r in mine if not target.check(r)]
    return missed


def _missed_by(row: dict, kind: str) -> list[str]:
    """The targets of arm kind `kind` that `row` misses, by description."""
    return [t.description for t in TARGETS if t.arm == kind and not t.check(row)]


def time_to_target(rows: Sequence[dict]) -> list[str]:
    """The RL methods compared by wall time to the main targets, one line per main or second-method arm: the arm's
    training minutes when its row meets every main target, else what it missed within them. Each arm is measured
    once, at the end of its run, so a met target bounds the time to it from above and a missed one says it was not
    reached within that budget."""
    lines = []
    for row in (r for r in rows if r["arm"] in ("main", "second")):
        missed, within = _missed_by(row, "main"), f"within {row['minutes']:.1f} min"
        if missed:
            lines.append(f"{row['name']}: not at the target {within} (missed: {'; '.join(missed)})")
        else:
            lines.append(f"{row['name']}: at the target {within}")
    return lines


TABLE_COLUMNS = (
    ("judge win", f"win_rate/{PRIMARY_JUDGE}"),
    ("95% CI", None),
    ("2nd judge win", f"win_rate/{SECOND_JUDGE}"),
    ("RM win", "win_rate/reward"),
    ("KL (nats)", "kl"),
    ("ref ppl", "reference_ppl"),
    ("ref ppl SFT", "reference_ppl_sft"),
    ("distinct-2", "distinct_2"),
    ("length", "length"),
    ("length SFT", "length_sft"),
    ("minutes", "minutes"),
)


def results_table(rows: Sequence[dict]) -> str:
    """The results as a Markdown table, one row per arm, every figure against the SFT policy."""

    def cell(row: dict, key: str | None) -> str:
        if key is None:  # the primary judge's Wilson interval
            low, high = row.get(f"win_rate/{PRIMARY_JUDGE}_low"), row.get(f"win_rate/{PRIMARY_JUDGE}_high")
            return "-" if low is None else f"[{low:.2f}, {high:.2f}]"
        value = row.get(key)
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"

    head = "| arm | " + " | ".join(name for name, _ in TABLE_COLUMNS) + " |"
    rule = "|" + "---|" * (len(TABLE_COLUMNS) + 1)
    lines = [f"| {r['name']} | " + " | ".join(cell(r, key) for _, key in TABLE_COLUMNS) + " |" for r in rows]
    return "\n".join([head, rule, *lines]) + "\n"

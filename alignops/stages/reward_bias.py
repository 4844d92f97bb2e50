"""Length and emptiness checks of a reward model: the part of its quality gate that asks "would PPO learn to be
short (or long) from it?", since pair accuracy alone cannot tell (on this data "the longer wins" scores 0.49, so a
model whose scores correlate -0.31 with length still beat it).

    evidence = measure(score, test_pairs, sft_replies, length)   # score(prompts, responses) -> scores
    reasons = bias_reasons(evidence, BiasBounds())                 # [] when the model may be optimised against

Three measurements on the held-out pairs' responses:
- corr(score, length): Pearson correlation of each response's score with its length in tokens;
- length-matched accuracy: pair accuracy on the pairs whose two responses are about as long (within 10 % or one
  token), where length cannot be what the model reads;
- emptiness: the mean score of an empty reply against the median score of the SFT model's own replies to the same
  prompts (a reward model that prefers silence teaches PPO to stop).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from alignops.data.preferences import Pair

Score = Callable[[Sequence[str], Sequence[str]], Sequence[float]]  # (prompts, responses) -> one score each


@dataclass(frozen=True)
class BiasBounds:
    max_abs_length_corr: float = 0.3  # |corr(score, length)| above it: the model reads length
    min_matched_accuracy: float = 0.5  # length-matched pair accuracy at or under it: no preference beyond length
    min_matched_pairs: int = 10  # fewer length-matched pairs than this: that check is skipped (and said so)


@dataclass(frozen=True)
class BiasEvidence:
    length_corr: float  # Pearson corr(score, length in tokens) over the pairs' responses
    matched_accuracy: float | None  # pair accuracy on length-matched pairs; None when there are none
    matched_pairs: int
    empty_score: float  # mean score of an empty reply to the pairs' prompts
    typical_score: float  # median score of the SFT model's replies to the same prompts

    def metrics(self, prefix: str = "reward/") -> dict[str, float]:
        out = {
            f"{prefix}length_corr": self.length_corr,
            f"{prefix}length_matched_pairs": float(self.matched_pairs),
            f"{prefix}empty_reply_score": self.empty_score,
            f"{prefix}sft_reply_score_median": self.typical_score,
        }
        if self.matched_accuracy is not None:
            out[f"{prefix}length_matched_accuracy"] = self.matched_accuracy
        return out


def _pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation; 0.0 when either side is constant (no linear relation to speak of)."""
    mx, my = statistics.fmean(x), statistics.fmean(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    return sxy / (sxx * syy) ** 0.5 if sxx and syy else 0.0


def _matched(a: int, b: int) -> bool:
    return abs(a - b) <= max(1, 0.1 * max(a, b))


def measure(
    score: Score, pairs: Sequence[Pair], sft_replies: dict[str, str], length: Callable[[str], int]
) -> BiasEvidence:
    """The evidence on held-out pairs; sft_replies maps each prompt to the SFT model's reply (the prompts of the
    emptiness check are its keys)."""
    if not pairs or not sft_replies:
        raise ValueError("measure needs held-out pairs and at least one SFT reply")
    prompts = [p.prompt for p in pairs]
    chosen = list(score(prompts, [p.chosen for p in pairs]))
    rejected = list(score(prompts, [p.rejected for p in pairs]))
    lengths = [length(p.chosen) for p in pairs] + [length(p.rejected) for p in pairs]
    wins = [
        c > r for c, r, p in zip(chosen, rejected, pairs, strict=True) if _matched(length(p.chosen), length(p.rejected))
    ]
    reply_prompts = sorted(sft_replies)
    empty = score(reply_prompts, [""] * len(reply_prompts))
    typical = score(reply_prompts, [sft_replies[p] for p in reply_prompts])
    return BiasEvidence(
        length_corr=_pearson(chosen + rejected, lengths),
        matched_accuracy=sum(wins) / len(wins) if wins else None,
        matched_pairs=len(wins),
        empty_score=statistics.fmean(empty),
        typical_score=statistics.median(typical),
    )


def bias_reasons(evidence: BiasEvidence, bounds: BiasBounds) -> list[str]:
    """Why the reward model would teach length or silence rather than preference ([] when it would not)."""
    reasons = []
    if abs(evidence.length_corr) > bounds.max_abs_length_corr:
        direction = "longer" if evidence.length_corr > 0 else "shorter"
        reasons.append(
            f"its scores correlate {evidence.length_corr:+.2f} with response length (bound "
            f"+-{bounds.max_abs_length_corr:.2f}): it rewards {direction} responses"
        )
    matched = evidence.matched_accuracy
    if (
        evidence.matched_pairs >= bounds.min_matched_pairs
        and matched is not None
        and matched <= bounds.min_matched_accuracy
    ):
        reasons.append(
            f"on {evidence.matched_pairs} length-matched pairs its accuracy is {matched:.3f}, not above "
            f"{bounds.min_matched_accuracy:.3f}: without a length difference it does not prefer what people preferred"
        )
    if evidence.empty_score > evidence.typical_score:
        reasons.append(
            f"an empty reply scores {evidence.empty_score:.3f}, above the SFT model's typical reply "
            f"({evidence.typical_score:.3f}, median): PPO would learn to stop"
        )
    return reasons

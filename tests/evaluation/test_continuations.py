"""The sentiment experiment's measurements on hand-computed cases: distinct-2, one arm against SFT, the targets."""

import math

import pytest

from alignops.evaluation.continuations import (
    Samples,
    arm_metrics,
    distinct_n,
    missed_targets,
    results_table,
    side_by_side,
    time_to_target,
)


def test_distinct_2_counts_unique_word_bigrams():
    # "a b a b" -> (a b), (b a), (a b); "a b c" -> (a b), (b c): 5 bigrams, 3 distinct
    assert distinct_n(["a b a b", "a b c"]) == pytest.approx(3 / 5)
    assert distinct_n(["one", ""]) == 0.0  # no bigram at all
    assert distinct_n(["x y z"], n=1) == 1.0


def _samples(texts, lengths, reward, nll):
    return Samples(texts=texts, lengths=lengths, reward=reward, reference_nll=nll)


def test_arm_metrics_against_sft():
    judge = {"good": 1.0, "bad": -1.0, "meh": 0.0}
    policy = _samples(["good", "good", "meh", "bad"], [2, 2, 2, 2], [1.0, 0.5, 0.0, 0.0], [2.0, 2.0, 2.0, 2.0])
    sft = _samples(["bad", "meh", "meh", "good"], [4, 4, 4, 4], [0.0, 0.0, 0.0, 1.0], [4.0, 4.0, 4.0, 4.0])
    m = arm_metrics(policy, sft, {"toy": lambda t: judge[t]}, kl=[1.0, 2.0, 3.0, 6.0])
    # judge: win, win, tie, loss -> 2 wins of 3 decisive, 1 tie
    assert (m["win_rate/toy_wins"], m["win_rate/toy_losses"], m["win_rate/toy_ties"]) == (2, 1, 1)
    assert m["win_rate/toy"] == pytest.approx(2 / 3)
    assert m["win_rate/toy_low"] < 2 / 3 < m["win_rate/toy_high"]
    assert m["win_rate/reward"] == pytest.approx(2 / 3)  # win, win, tie, loss
    assert m["kl"] == 3.0
    assert m["reference_ppl"] == pytest.approx(math.exp(8 / 8))  # 8 nats over 8 tokens
    assert m["reference_ppl_sft"] == pytest.approx(math.exp(16 / 16))
    assert (m["length"], m["length_sft"]) == (2.0, 4.0)
    assert m["score/toy"] == pytest.approx(0.25) and m["score/toy_sft"] == 0.0


def test_arm_metrics_refuses_mismatched_prefixes():
    one = _samples(["a"], [1], [0.0], [1.0])
    two = _samples(["a", "b"], [1, 1], [0.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="1 policy continuations against 2"):
        arm_metrics(one, two, {}, kl=[0.0])


def test_side_by_side_pairs_each_prefix_with_both_continuations_and_their_scores():
    judge = {"good": 1.0, "bad": -1.0}
    policy, sft = (
        _samples(["good", "bad"], [1, 1], [0.5, -0.5], [1.0, 1.0]),
        _samples(["bad", "bad"], [1, 1], [0.0, 0.1], []),
    )
    pairs = side_by_side(["p0", "p1"], policy, sft, {"toy": lambda t: judge[t]})
    assert pairs == [
        {"prompt": "p0", "policy": "good", "sft": "bad", "reward": 0.5, "reward_sft": 0.0, "toy": 1.0, "toy_sft": -1.0},
        {
            "prompt": "p1",
            "policy": "bad",
            "sft": "bad",
            "reward": -0.5,
            "reward_sft": 0.1,
            "toy": -1.0,
            "toy_sft": -1.0,
        },
    ]
    with pytest.raises(ValueError, match="3 prefixes, 2 policy and 2 SFT continuations"):
        side_by_side(["p0", "p1", "p2"], policy, sft, {})


def _row(name, arm, **metrics):
    base = {
        "win_rate/vader": 0.75, "win_rate/vader_low": 0.70, "win_rate/vader_high": 0.80, "win_rate/afinn": 0.66,
        "win_rate/reward": 0.80, "kl": 5.0, "length": 10.0, "length_sft": 11.0, "reference_ppl": 20.0,
        "reference_ppl_sft": 15.0, "distinct_2": 0.7, "distinct_2_sft": 0.75,
    }  # fmt: skip
    return {"name": name, "arm": arm, **base, **metrics}


def _all_met():
    return [
        _row("ppo seed 0", "main"),
        _row("grpo seed 0", "second"),
        _row("negated", "negated", **{"win_rate/vader": 0.2}),
        _row("shuffled", "shuffled", **{"win_rate/vader": 0.52, "win_rate/vader_low": 0.45}),
    ]


def test_targets_all_met():
    assert missed_targets(_all_met()) == []


@pytest.mark.parametrize(
    ("index", "change", "missed"),
    [
        (0, {"win_rate/vader_low": 0.60}, "ppo seed 0: judge win rate lower bound >= 0.65"),
        (0, {"kl": 9.0}, "ppo seed 0: KL within 3-8 nats"),
        (0, {"length": 14.0}, "ppo seed 0: mean length within 20% of SFT's"),
        (0, {"win_rate/reward": 0.95}, "ppo seed 0: reward-model win rate - judge win rate <= 0.15"),
        (0, {"reference_ppl": 31.0}, "ppo seed 0: reference perplexity <= 2x SFT's"),
        (0, {"distinct_2": 0.43}, "ppo seed 0: distinct-2 >= 0.8x SFT's"),  # measured: "excellent and excellent"
        (2, {"win_rate/vader": 0.4}, "negated: judge win rate <= 0.30"),
        (2, {"distinct_2": 0.26}, "negated: distinct-2 >= 0.8x SFT's"),  # measured: "No, no, no, no, ..."
        (3, {"win_rate/vader_low": 0.55}, "shuffled: judge win-rate interval covers 0.5"),
    ],
)
def test_each_target_can_fail(index, change, missed):
    rows = _all_met()
    rows[index] = {**rows[index], **change}
    assert missed_targets(rows) == [missed]


def test_a_missing_control_misses_its_targets():
    rows = [r for r in _all_met() if r["arm"] != "negated"]
    assert missed_targets(rows) == [
        "negated: judge win rate <= 0.30 (no such arm was run)",
        "negated: distinct-2 >= 0.8x SFT's (no such arm was run)",
    ]


def test_time_to_target_compares_the_methods_and_says_what_a_slower_one_missed():
    rows = _all_met()
    rows[0] = {**rows[0], "minutes": 9.14}
    rows[1] = {**rows[1], "minutes": 10.4, "win_rate/vader": 0.68, "kl": 2.5}  # GRPO: short of the target
    assert time_to_target(rows) == [
        "ppo seed 0: at the target within 9.1 min",
        "grpo seed 0: not at the target within 10.4 min (missed: judge win rate >= 0.70; KL within 3-8 nats)",
    ]  # the controls are not methods: no line


def test_results_table_has_a_row_per_arm():
    table = results_table(_all_met()).splitlines()
    assert len(table) == 2 + 4
    assert table[2].startswith("| ppo seed 0 | 0.75 | [0.70, 0.80] | 0.66 | 0.80 | 5.00 |")


def test_reward_judge_agreement_counts_pairs_the_judge_can_order():
    from alignops.evaluation.continuations import reward_judge_agreement

    judge = {"good": 1.0, "bad": -1.0, "meh": 0.0}.get
    first = _samples(["good", "bad", "good", "meh", "good"], [1] * 5, [2.0, 0.0, 1.0, 5.0, 3.0], [0.0] * 5)
    second = _samples(["bad", "good", "bad", "meh", "bad"], [1] * 5, [1.0, 1.0, 3.0, 0.0, 3.0], [0.0] * 5)
    rate = reward_judge_agreement(first, second, judge)
    # pair 0 agrees, 1 agrees, 2 disagrees, 3 has no judge order (left out), 4 is a reward tie
    assert (rate.wins, rate.losses, rate.ties, rate.rate) == (2, 1, 1, pytest.approx(2 / 3))
    none = reward_judge_agreement(_samples(["meh"], [1], [1.0], [0.0]), _samples(["meh"], [1], [0.0], [0.0]), judge)
    assert none.rate is None and (none.low, none.high) == (0.0, 1.0)  # the judge ordered nothing: no evidence


def test_response_nll_scores_only_the_response_tokens_whatever_the_padding():
    import torch
    import torch.nn.functional as F

    from alignops.evaluation.scoring import Responses, response_nll
    from models.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, block_size=32, n_layer=1, n_head=2, n_embd=16)).eval()
    prompts, answers = [[1, 2, 3], [4, 5]], [[6, 7], [8, 9, 10, 11]]
    out = response_nll(model, Responses(["", ""], prompts, answers, [False, False]), pad=0, batch_size=2)
    for got, p, r in zip(out, prompts, answers, strict=True):
        ids = torch.tensor([p + r])
        logp = F.log_softmax(model(ids).float(), dim=-1)[0]
        expected = -sum(float(logp[len(p) - 1 + i, tok]) for i, tok in enumerate(r))
        assert got == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    "shape,suppressed,temperature", [("gpt", None, 1.0), ("llama", None, 1.0), ("gpt", 5, 1.0), ("gpt", 5, 0.7)]
)
def test_sequence_kl_is_the_exact_kl_over_the_response_positions(
    shape: str, suppressed: int | None, temperature: float
):
    """sequence_kl runs the LM head on the response positions only: the same figure as the full logits give,
    on either kind of base, rows of any length (an empty response has KL 0). Responses are scored under the
    distributions they were drawn from: tempered, and with a token suppressed in generation (fixed length) both
    renormalised without it."""
    import torch
    import torch.nn.functional as F

    from alignops.evaluation.scoring import Responses, sequence_kl
    from tests.models.test_modules_on_bases import base

    policy, reference = base(shape, seed=0).eval(), base(shape, seed=1).eval()
    prompts, answers = [[3, 4, 5], [6, 7], [8, 9, 10]], [[11, 12], [13, 14, 15, 16], []]
    responses = Responses(["", "", ""], prompts, answers, [False] * 3, suppressed, temperature)
    out = sequence_kl(policy, reference, responses, pad=0, batch_size=3)
    for got, p, r in zip(out, prompts, answers, strict=True):
        ids = torch.tensor([p + r])
        with torch.no_grad():
            logp, logq = (F.log_softmax(m(ids).float() / temperature, dim=-1)[0] for m in (policy, reference))
        if suppressed is not None:  # p(v) / (1 - p(suppressed)) elsewhere, 0 there (0 * log 0 counts 0)
            logp, logq = (x.index_fill(-1, torch.tensor([suppressed]), -1e30) for x in (logp, logq))
            logp, logq = (F.log_softmax(x, dim=-1) for x in (logp, logq))
        expected = sum(
            float((logp[t].exp() * (logp[t] - logq[t])).sum()) for t in range(len(p) - 1, len(p) - 1 + len(r))
        )
        assert got == pytest.approx(expected, rel=1e-4, abs=1e-6)

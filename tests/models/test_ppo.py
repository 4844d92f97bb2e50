"""Tests of models.ppo: every function against numbers worked out by hand in the comments."""

from __future__ import annotations

import math

import pytest
import torch

from models.ppo import rollout
from models.ppo.advantages import gae, masked_mean, masked_var, masked_whiten
from models.ppo.health import HealthBounds, check_health
from models.ppo.kl import AdaptiveKLController, FixedKLController, kl_k1, kl_k3
from models.ppo.losses import entropy_from_logits, kl_penalized_rewards, policy_loss, value_loss
from models.ppo.rollout import head_logprobs, logprobs_of, response_mask, token_entropy

NAN = float("nan")


def t(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def close(actual: torch.Tensor, expected: list | float, atol: float = 1e-5) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype), atol=atol, rtol=0)


# ---- rollout ------------------------------------------------------------------------------------------------


def test_logprobs_of_gathers_log_softmax():
    # probabilities (1/4, 3/4): log p(token 1) = log 0.75 = -0.2876821, log p(token 0) = log 0.25 = -1.3862944
    logits = torch.log(t([1.0, 3.0], [1.0, 3.0])).unsqueeze(0) + 5.0  # (1, 2, 2); a shift changes nothing
    close(logprobs_of(logits, torch.tensor([[1, 0]])), [[-0.2876821, -1.3862944]])


def test_response_mask_includes_first_eos_and_masks_after_it():
    eos = 2
    tokens = torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8], [2, 0, 0, 0], [0, 0, 2, 0]])  # pad 0 sampled mid-row in row 3
    expected = [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 0]]
    assert response_mask(tokens, eos).tolist() == expected
    assert response_mask(tokens, None).tolist() == [[1] * 4] * 4


def test_entropy():
    # token 0 uniform over 4: ln 4 = 1.3862944
    # token 1 (1/4, 3/4, ~0, ~0): 0.25 ln 4 + 0.75 ln(4/3) = 0.3465736 + 0.2157616 = 0.5623351
    logits = torch.log(t([1.0, 1.0, 1.0, 1.0], [1.0, 3.0, 1e-30, 1e-30])).unsqueeze(0)  # (1, 2, 4)
    close(token_entropy(logits), [[1.3862944, 0.5623351]], atol=1e-4)
    close(entropy_from_logits(logits, torch.tensor([[1, 0]])), 1.3862944, atol=1e-4)  # second token masked
    close(entropy_from_logits(logits, torch.tensor([[1.0, 1.0]])), (1.3862944 + 0.5623351) / 2, atol=1e-4)


def _head_reference(hidden, weight, bias, tokens, temperature, suppress):
    """head_logprobs by the plain route: whole float32 logits, -inf for the suppressed column, log-softmax."""
    logits = torch.nn.functional.linear(hidden.float(), weight.float(), bias.float()) / temperature
    if suppress is not None:
        logits = logits.index_fill(1, torch.tensor([suppress]), float("-inf"))
    logprobs = logits.log_softmax(dim=-1)
    p = logprobs.exp()
    entropy = -(p * torch.where(p > 0, logprobs, 0.0)).sum(dim=-1)
    return logprobs.gather(1, tokens.unsqueeze(1)).squeeze(1), entropy


@pytest.mark.parametrize("chunk_rows", [1, 4, 64])  # one row, chunks that do not divide the 23 rows, one chunk
@pytest.mark.parametrize("suppress", [None, 3])
def test_head_logprobs_match_log_softmax_of_the_logits_with_their_gradients(monkeypatch, chunk_rows, suppress):
    V = 40
    monkeypatch.setattr(rollout, "CHUNK_ELEMENTS", chunk_rows * V)
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(23, 8, generator=g, requires_grad=True)
    weight = torch.randn(V, 8, generator=g, requires_grad=True)
    bias = torch.randn(V, generator=g, requires_grad=True)
    tokens = torch.randint(0, V, (23,), generator=g)
    tokens = tokens if suppress is None else tokens.masked_fill(tokens == suppress, 0)  # never the impossible one
    up_logp, up_entropy = torch.randn(23, generator=g), torch.randn(23, generator=g)

    logp, entropy = head_logprobs(hidden, weight, bias, tokens, 0.7, suppress, entropy_grad=True)
    ref_logp, ref_entropy = _head_reference(hidden, weight, bias, tokens, 0.7, suppress)
    torch.testing.assert_close(logp, ref_logp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(entropy, ref_entropy, atol=1e-5, rtol=1e-5)
    grads = torch.autograd.grad((logp * up_logp).sum() + (entropy * up_entropy).sum(), [hidden, weight, bias])
    ref_grads = torch.autograd.grad(
        (ref_logp * up_logp).sum() + (ref_entropy * up_entropy).sum(), [hidden, weight, bias]
    )
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_head_logprobs_entropy_is_reported_without_gradient_unless_asked():
    hidden, weight = torch.randn(5, 4, requires_grad=True), torch.randn(9, 4, requires_grad=True)
    tokens = torch.tensor([0, 1, 2, 3, 4])
    logp, entropy = head_logprobs(hidden, weight, None, tokens)
    assert logp.requires_grad and not entropy.requires_grad
    (grad,) = torch.autograd.grad(logp.sum(), [hidden])  # and the log-probs' gradient is the log-softmax's
    (want,) = torch.autograd.grad(_head_reference(hidden, weight, torch.zeros(9), tokens, 1.0, None)[0].sum(), [hidden])
    torch.testing.assert_close(grad, want, atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        assert not head_logprobs(hidden, weight, None, tokens)[0].requires_grad


def test_head_logprobs_under_bf16_autocast_keep_float32_values_and_run_the_backward_in_bf16():
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(12, 16, generator=g, requires_grad=True)
    weight = torch.randn(30, 16, generator=g, requires_grad=True)
    tokens = torch.randint(0, 30, (12,), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logp, _ = head_logprobs(hidden, weight, None, tokens)
    ref_logp, _ = _head_reference(hidden, weight, torch.zeros(30), tokens, 1.0, None)
    torch.testing.assert_close(logp, ref_logp, atol=1e-5, rtol=1e-5)  # the values: float32 arithmetic, exactly
    logp.sum().backward()
    ref_grad = torch.autograd.grad(ref_logp.sum(), [weight])[0]
    assert hidden.grad.dtype == weight.grad.dtype == torch.float32
    # bf16 matmuls: close to the float32 gradient at bf16's precision, not at float32's
    torch.testing.assert_close(weight.grad, ref_grad, atol=2e-2, rtol=2e-2)
    assert not torch.equal(weight.grad, ref_grad)
    # a frozen weight's cached bf16 cast (low_weight) gives the same gradient as the cast made in the backward
    frozen = weight.detach()
    grads = []
    for low_weight in (None, frozen.bfloat16()):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logp, _ = head_logprobs(hidden, frozen, None, tokens, low_weight=low_weight)
        grads.append(torch.autograd.grad(logp.sum(), [hidden])[0])
    assert torch.equal(grads[0], grads[1])


def test_head_logprobs_refuse_unflattened_inputs():
    with pytest.raises(ValueError, match="flatten the batch and time dimensions"):
        head_logprobs(torch.randn(2, 3, 4), torch.randn(9, 4), None, torch.zeros(2, 3, dtype=torch.long))


# ---- masked statistics --------------------------------------------------------------------------------------


def test_masked_mean_and_var_ignore_masked_positions():
    x = t([1.0, 2.0, 3.0, 100.0], [5.0, -50.0, NAN, 0.0])
    mask = t([1, 1, 1, 0], [1, 0, 0, 0])
    # real values 1, 2, 3, 5: mean 11 / 4 = 2.75; squared deviations 3.0625 + 0.5625 + 0.0625 + 5.0625 = 8.75
    close(masked_mean(x, mask), 2.75)
    close(masked_mean(x, mask, dim=1), [2.0, 5.0])
    close(masked_var(x, mask), 8.75 / 3)  # unbiased
    close(masked_var(x, mask, unbiased=False), 8.75 / 4)
    with pytest.raises(ValueError, match="at least 2"):
        masked_var(x, t([1, 0, 0, 0], [0, 0, 0, 0]))


def test_masked_whiten():
    x = t([1.0, 2.0, 3.0, 100.0], [5.0, -50.0, NAN, 0.0])
    mask = t([1, 1, 1, 0], [1, 0, 0, 0]).bool()
    w = masked_whiten(x, mask)
    # (x - 2.75) / sqrt(8.75 / 3) = (x - 2.75) / 1.7078251
    close(w[mask], [-1.0246950, -0.4391550, 0.1463850, 1.3174651], atol=1e-5)
    close(w[~mask], [0.0] * 4)
    close(masked_mean(w, mask), 0.0)
    close(masked_var(w, mask), 1.0, atol=1e-5)
    kept = masked_whiten(x, mask, shift_mean=False)
    close(masked_mean(kept, mask), 2.75)
    assert x[0, 3] == 100.0  # input untouched


# ---- GAE ----------------------------------------------------------------------------------------------------


def test_gae_single_episode_by_hand():
    # gamma = 0.9, lam = 0.8, gamma * lam = 0.72; value after the last token is 0
    # delta_3 = 2 + 0.9 * 0 - 1   =  1.0             A_3 =  1.0
    # delta_2 = -1 + 0.9 * 1 - 0  = -0.1             A_2 = -0.1 + 0.72 * 1.0     =  0.62
    # delta_1 = 0 + 0.9 * 0 - 1   = -1.0             A_1 = -1.0 + 0.72 * 0.62    = -0.5536
    # delta_0 = 1 + 0.9 * 1 - 0.5 =  1.4             A_0 =  1.4 + 0.72 * -0.5536 =  1.001408
    # returns = A + V = [1.501408, 0.4464, 0.62, 2.0]
    rewards, values = t([1.0, 0.0, -1.0, 2.0]), t([0.5, 1.0, 0.0, 1.0])
    adv, ret = gae(rewards, values, torch.ones(1, 4), gamma=0.9, lam=0.8)
    close(adv, [[1.001408, -0.5536, 0.62, 1.0]])
    close(ret, [[1.501408, 0.4464, 0.62, 2.0]])


def test_gae_padding_does_not_leak():
    rewards, values = t([1.0, 0.0, -1.0, 2.0]), t([0.5, 1.0, 0.0, 1.0])
    alone_adv, alone_ret = gae(t([1.0, 0.0]), t([0.5, 1.0]), torch.ones(1, 2), 0.9, 0.8)
    # row 1 right-padded, row 2 left- and right-padded; the padding holds garbage
    batch_r = torch.cat([rewards, t([1.0, 0.0, 7.0, NAN]), t([9.0, 1.0, 0.0, 5.0])])
    batch_v = torch.cat([values, t([0.5, 1.0, 3.0, NAN]), t([NAN, 0.5, 1.0, -4.0])])
    mask = t([1, 1, 1, 1], [1, 1, 0, 0], [0, 1, 1, 0])
    adv, ret = gae(batch_r, batch_v, mask, 0.9, 0.8)
    close(adv[0], [1.001408, -0.5536, 0.62, 1.0])  # the full row is unaffected by its neighbours
    torch.testing.assert_close(adv[1, :2], alone_adv[0])
    torch.testing.assert_close(ret[1, :2], alone_ret[0])
    torch.testing.assert_close(adv[2, 1:3], alone_adv[0])
    close(adv[1:, :].masked_select(~mask[1:].bool()), [0.0] * 4)
    # a hole inside a row: the real tokens around it are consecutive steps
    hole_adv, _ = gae(t([1.0, 5.0, 0.0]), t([0.5, 5.0, 1.0]), t([1, 0, 1]), 0.9, 0.8)
    close(hole_adv[0, [0, 2]], alone_adv[0].tolist())


# ---- KL -----------------------------------------------------------------------------------------------------


def test_kl_estimators():
    logp, ref = t([-1.0, -2.0]), t([-1.5, -1.0])
    close(kl_k1(logp, ref), [[0.5, -1.0]])
    # r = exp(ref - logp) = exp(-0.5) = 0.6065307, exp(1) = 2.7182818
    # k3 = (r - 1) - log r = -0.3934693 + 0.5 = 0.1065307;  1.7182818 - 1 = 0.7182818
    k3 = kl_k3(logp, ref)
    close(k3, [[0.1065307, 0.7182818]])
    assert (k3 >= 0).all()
    # small difference 0.01: k1 = 0.01, k3 = exp(-0.01) - 1 + 0.01 = 4.98337e-5 ~ k1^2 / 2 = 5e-5
    small = kl_k3(t([-1.0]), t([-1.01]))
    close(small, [[4.98337e-5]], atol=1e-9)
    assert abs(small.item() - 0.01**2 / 2) / 5e-5 < 0.01


def test_adaptive_kl_controller():
    # target 6, horizon 10_000, n_steps 256: n / horizon = 0.0256
    up = AdaptiveKLController(init_beta=0.1, target=6.0, horizon=10_000)
    assert up.update(9.0, 256) == pytest.approx(0.1 * (1 + 0.2 * 0.0256))  # error 0.5 clipped to 0.2: 0.100512
    down = AdaptiveKLController(0.1, 6.0, 10_000)
    assert down.update(3.0, 256) == pytest.approx(0.099488)  # error -0.5 clipped to -0.2
    near = AdaptiveKLController(0.1, 6.0, 10_000)
    assert near.update(6.6, 256) == pytest.approx(0.100256)  # error 0.1, unclipped
    assert near.update(6.0, 256) == pytest.approx(0.100256)  # on target: unchanged
    # resume: a fresh controller loaded from the state continues identically
    resumed = AdaptiveKLController(0.5, 6.0, 10_000)
    resumed.load_state_dict(up.state_dict())
    assert resumed.beta == up.beta
    assert resumed.update(12.0, 100) == up.update(12.0, 100)
    fixed = FixedKLController(0.05)
    assert fixed.update(100.0, 256) == 0.05
    with pytest.raises(ValueError, match="target"):
        AdaptiveKLController(0.1, 0.0, 10_000)


# ---- losses -------------------------------------------------------------------------------------------------


def test_kl_penalized_rewards_put_score_on_last_real_token():
    score = torch.tensor([2.0, -1.0])
    logp = t([-1.0, -1.0, -1.0], [-2.0, -2.0, -2.0])
    ref = t([-1.5, -1.0, -0.5], [-1.0, -2.0, -9.0])
    mask = t([1, 1, 1], [1, 1, 0])
    # k1 = [[0.5, 0, -0.5], [-1, 0, (7 masked) 0]]; -0.1 * k1 = [[-0.05, 0, 0.05], [0.1, 0, 0]]
    rewards, kl = kl_penalized_rewards(score, logp, ref, mask, beta=0.1)
    close(kl, [[0.5, 0.0, -0.5], [-1.0, 0.0, 0.0]])
    close(rewards, [[-0.05, 0.0, 2.05], [0.1, -1.0, 0.0]])
    _, clipped = kl_penalized_rewards(score, logp, ref, mask, beta=0.1, clip_kl=0.2)
    close(clipped, [[0.2, 0.0, -0.2], [-0.2, 0.0, 0.0]])
    _, k3 = kl_penalized_rewards(score, logp, ref, mask, beta=0.1, estimator="k3")
    assert (k3 >= 0).all() and k3[1, 2] == 0
    with pytest.raises(ValueError, match="estimator"):
        kl_penalized_rewards(score, logp, ref, mask, beta=0.1, estimator="k2")


def test_policy_loss_clips_both_signs():
    # clip 0.2: ratio clipped to [0.8, 1.2]; per token max(-A r, -A clip(r))
    #   A= 2, r=1.1: -2.2 vs -2.2 -> -2.2 (inside)
    #   A= 1, r=1.5: -1.5 vs -1.2 -> -1.2 (clipped)
    #   A=-1, r=0.5:  0.5 vs  0.8 ->  0.8 (clipped)
    #   A= 1, r=0.5: -0.5 vs -0.8 -> -0.5 (pessimistic side: not clipped)
    #   A=-1, r=1.5:  1.5 vs  1.2 ->  1.5 (not clipped)
    #   masked token with log-ratio 100 (ratio overflows to inf) is ignored
    # loss = (-2.2 - 1.2 + 0.8 - 0.5 + 1.5) / 5 = -0.32; clipfrac 2 / 5
    ratios = torch.tensor([1.1, 1.5, 0.5, 0.5, 1.5])
    old = torch.full((1, 6), -2.0)
    logp = torch.cat([old[:, :5] + ratios.log(), torch.tensor([[98.0]])], 1).requires_grad_()
    adv = t([2.0, 1.0, -1.0, 1.0, -1.0, 3.0])
    mask = t([1, 1, 1, 1, 1, 0])
    loss, stats = policy_loss(logp, old, adv, mask, clip_range=0.2)
    close(loss.detach(), -0.32)
    close(stats.clipfrac, 0.4)
    close(stats.ratio_mean, 5.1 / 5)
    close(stats.ratio_max, 1.5)
    # k3 = (r - 1) - log r: 0.0046898, 0.0945349, 0.1931472, 0.1931472, 0.0945349 -> mean 0.1160108
    close(stats.approx_kl, 0.1160108)
    loss.backward()
    # d loss / d logp = -A r / 5 where unclipped, 0 where clipped or masked
    close(logp.grad, [[-0.44, 0.0, 0.0, -0.1, 0.3, 0.0]])
    inside, inside_stats = policy_loss(logp.detach()[:, :1], old[:, :1], adv[:, :1], mask[:, :1], 0.2)
    close(inside, -2.2)  # ratio in range: plain -A * ratio
    assert inside_stats.clipfrac == 0


def test_value_loss_clipped_vs_unclipped():
    # clip 0.2, old value 1.0:
    #   V=1.1, R=2: (1.1-2)^2 = 0.81, V_clip = 1.1 -> 0.81           -> 0.81 (not clipped)
    #   V=1.5, R=2: (1.5-2)^2 = 0.25, V_clip = 1.2 -> (0.8)^2 = 0.64 -> 0.64 (clipped)
    #   V=1.5, R=1: 0.25,             V_clip = 1.2 -> 0.04           -> 0.25 (not clipped)
    # loss = 0.5 * (0.81 + 0.64 + 0.25) / 3 = 0.2833333; vf_clipfrac = 1 / 3
    values = t([1.1, 1.5, 1.5, NAN]).requires_grad_()
    old, returns, mask = t([1.0, 1.0, 1.0, 1.0]), t([2.0, 2.0, 1.0, 0.0]), t([1, 1, 1, 0])
    loss, stats = value_loss(values, old, returns, mask, clip_range_value=0.2)
    close(loss.detach(), 0.2833333)
    close(stats.vf_clipfrac, 1 / 3)
    loss.backward()
    # d/dV of 0.5 * (V - R)^2 / 3 = (V - R) / 3 where unclipped: -0.3, 0 (clipped), 0.1666667, 0 (masked)
    close(values.grad, [[-0.3, 0.0, 0.1666667, 0.0]])
    unclipped, _ = value_loss(values.detach(), old, returns, mask, clip_range_value=10.0)
    close(unclipped, 0.5 * (0.81 + 0.25 + 0.25) / 3)  # = 0.2183333


# ---- health -------------------------------------------------------------------------------------------------

HEALTHY = {
    "objective/kl": 4.0,
    "policy/approx_kl": 0.02,
    "policy/ratio_max": 1.6,
    "response/length_mean": 24.0,
    "response/eos_rate": 0.9,
    "objective/scores": 0.3,
}


def test_check_health_healthy():
    assert check_health(HEALTHY, HealthBounds()) == []
    assert check_health({}, HealthBounds()) == []  # absent metrics are skipped


def test_check_health_flags_nan_kl_spike_and_length_drift():
    bounds = HealthBounds(max_kl=10.0, max_response_length=60.0, min_eos_rate=0.5)
    [nan] = check_health({**HEALTHY, "objective/scores": NAN}, bounds)
    assert "objective/scores" in nan and "nan" in nan
    assert len(check_health({**HEALTHY, "objective/kl": math.inf}, bounds)) == 1  # inf once, not also a spike
    [spike] = check_health({**HEALTHY, "objective/kl": 31.5}, bounds)
    assert spike.startswith("objective/kl = 31.5 is above max_kl = 10")
    [approx] = check_health({**HEALTHY, "policy/approx_kl": torch.tensor(0.5)}, bounds)
    assert "policy/approx_kl = 0.5" in approx and "max_approx_kl = 0.2" in approx
    long = check_health({**HEALTHY, "response/length_mean": 64.0, "response/eos_rate": 0.1}, bounds)
    assert len(long) == 2
    assert "response/length_mean = 64 is above max_response_length = 60" in long[0]
    assert "response/eos_rate = 0.1 is below min_eos_rate = 0.5" in long[1]
    [short] = check_health({**HEALTHY, "response/length_mean": 1.0}, bounds)
    assert "below min_response_length = 2" in short


def test_check_health_bounds_length_relative_to_the_sft_policy():
    # SFT answered in 12 tokens on average: half of that is the floor, far above the absolute 2 tokens
    bounds = HealthBounds(min_length_fraction=0.5)
    relative = {**HEALTHY, "response/sft_length_mean": 12.0}
    assert check_health({**relative, "response/length_mean": 7.0}, bounds) == []
    [short] = check_health({**relative, "response/length_mean": 4.8}, bounds)
    assert "response/length_mean = 4.8 is below min_length_fraction * SFT length = 6" in short
    assert check_health({**HEALTHY, "response/length_mean": 4.8}, bounds) == []  # no SFT length measured: skipped

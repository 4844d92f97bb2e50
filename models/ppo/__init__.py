"""PPO math for RLHF as small pure tensor functions; the PPO loop only composes them.

    rollout     logprobs_of, head_logprobs, response_mask, token_entropy: per-token quantities of a sampled batch
    kl          kl_k1, kl_k3 estimators; FixedKLController, AdaptiveKLController (resumable)
    advantages  masked_mean, masked_var, masked_whiten; gae -> (advantages, returns)
    losses      kl_penalized_rewards, policy_loss, value_loss, entropy_from_logits
    group       grpo_advantages, rloo_advantages: critic-free advantages from G samples per prompt
    health      check_health(stats, HealthBounds) -> reasons a run is unhealthy

Shared conventions: every per-token tensor is (B, T) over response tokens, with a `mask` (B, T), float or bool,
1 = real response token, 0 = padding or after EOS. Every reduction is masked; inputs are never modified.
Torch only: nothing here imports the rest of alignops.

Tests: .venv/bin/python -m pytest tests/models/test_ppo.py -q
"""

"""Tests of models.ppo.module: real Lightning PPO fits of a tiny GPT (vocab 50) on CPU, no mocks.

The synthetic reward is +1 per occurrence of one token id (TARGET) in the text; prompts never contain it, so it
counts the response's. A random policy says it about 8 / 50 = 0.16 times in 8 tokens; PPO must teach it to say it
more while the KL to the reference stays bounded. They prove: learning (reward rises, every trainable parameter
moves, the reference does not), the KL penalty (huge beta keeps KL near 0), the adaptive controller, the logged
metric names, the health check (a planted NaN reward stops the run before any update), the one-position shift of
the log-probs and the reward model's input layout, bf16-mixed with a real RewardModel, and exact resume."""

from __future__ import annotations

import contextlib
import copy
import csv
import math
import pickle
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import Dataset

from alignops.data.loaders import resumable_loader
from models.gpt import GPT, GPTConfig
from models.ppo import module as ppo_module
from models.ppo.health import HealthBounds
from models.ppo.module import METRICS, PPOConfig, PPOModule, UnhealthyRun
from models.ppo.reward_scale import controlled
from models.reward import RewardModel

V, PAD, EOS, TARGET = 50, 0, 1, 7
TIMES = ("ppo/episodes_per_sec", "ppo/time_generation_s", "ppo/time_update_s")  # wall clock: never reproducible


class Prompts(Dataset):
    """n prompts of 2-5 random token ids, never PAD, EOS or TARGET."""

    def __init__(self, n: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.rows = []
        for _ in range(n):
            ids = torch.randint(2, V, (int(torch.randint(2, 6, (), generator=g)),), generator=g)
            self.rows.append(ids.masked_fill(ids == TARGET, 2))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.rows[i]


def left_pad(rows: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), PAD)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, T - len(r) :], mask[i, T - len(r) :] = r, 1
    return dict(input_ids=ids, attention_mask=mask)


def target_count(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The synthetic reward model: +1 per TARGET among the real tokens, (B,)."""
    return ((ids == TARGET) & mask.bool()).sum(dim=1).float()


def tiny_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=V, block_size=32, n_layer=2, n_head=2, n_embd=32))


def config(**overrides) -> PPOConfig:
    options = dict(rollout_batch_size=32, minibatch_size=16, ppo_epochs=4, max_new_tokens=8, lr=1e-3)
    return PPOConfig(**{**options, **overrides})


def module(cfg: PPOConfig, reward=target_count, seed: int = 0, health: HealthBounds | None = None) -> PPOModule:
    policy = tiny_gpt(seed)
    return PPOModule(policy, copy.deepcopy(policy), reward, cfg, eos_id=EOS, pad_id=PAD, health=health)


class StatsRecorder(L.Callback):
    """Every iteration's logged metrics, by iteration (1-based)."""

    def __init__(self) -> None:
        self.stats: dict[int, dict[str, float]] = {}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: PPOModule, *args) -> None:
        iteration = trainer.global_step // pl_module.config.steps_per_iteration
        self.stats[iteration] = {k: float(v) for k, v in trainer.callback_metrics.items()}


def fit(
    model: PPOModule, iterations: int, tmp_path: Path, ckpt_path: Path | None = None, prompts: int = 96, **kwargs
) -> dict[int, dict[str, float]]:
    recorder = StatsRecorder()
    options = dict(
        accelerator="cpu",
        devices=1,
        max_steps=iterations * model.config.steps_per_iteration,  # global_step counts optimizer steps
        logger=False,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    options.update(kwargs)
    options["callbacks"] = [recorder, *options.get("callbacks", [])]
    loader = resumable_loader(
        Prompts(prompts), batch_size=model.config.rollout_batch_size, seed=0, collate_fn=left_pad, drop_last=True
    )
    L.Trainer(**options).fit(model, loader, ckpt_path=ckpt_path)
    return recorder.stats


def test_reward_rises_with_bounded_kl_and_every_trainable_parameter_moves(tmp_path: Path) -> None:
    model = module(config())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = fit(model, 12, tmp_path)
    assert sorted(stats) == list(range(1, 13))
    reward = [stats[i]["ppo/reward"] for i in range(1, 13)]
    kl = [stats[i]["ppo/kl"] for i in range(1, 13)]
    first, last = sum(reward[:3]) / 3, sum(reward[-3:]) / 3
    # measured (seed 0): 0.06 -> 1.9 over the 12 iterations (first three 0.11, last three 1.5), KL rising to 3.2
    assert last > first + 0.8 and last > 3 * first, reward
    assert all(math.isfinite(k) and k < 15.0 for k in kl), kl
    assert kl[0] == 0.0  # the first rollout's policy is the reference itself
    after = model.state_dict()
    trained = [k for k in after if k.startswith(("model.", "value_head."))]
    assert [k for k in trained if torch.equal(before[k], after[k])] == []  # every trainable parameter moved
    assert all(torch.equal(before[k], after[k]) for k in after if k.startswith("reference."))
    assert model.policy_model() is model.model and not model.reference.transformer.wte.weight.requires_grad


def test_a_kl_budget_stops_the_run_at_the_first_window_whose_mean_kl_reaches_it(tmp_path: Path) -> None:
    """stop_at_kl: the run ends after the iteration at which the mean KL of the last kl_stop_window iterations
    first reaches the budget; until then it is the same run as one without a budget (same seeds, same draws)."""
    free = fit(module(config()), 12, tmp_path)
    kl = [free[i]["ppo/kl"] for i in range(1, 13)]
    window = 3
    means = [sum(kl[i - window : i]) / window for i in range(window, 13)]  # means[j]: iterations j+1 .. j+window
    budget = means[4]  # the mean of iterations 5-7: reached at iteration 7, or earlier if the KL dipped
    stop = window + next(j for j, m in enumerate(means) if m >= budget)
    assert 5 < stop <= 7, (kl, budget)  # the KL rises (test above): the budget is reached mid-run, not at once
    model = module(config(stop_at_kl=budget, kl_stop_window=window))
    stopped = fit(model, 12, tmp_path)
    assert sorted(stopped) == list(range(1, stop + 1))
    assert [stopped[i]["ppo/kl"] for i in stopped] == pytest.approx(kl[:stop], abs=1e-6)
    assert model.kl_budget_spent() and len(model.kl_history) == stop
    unspent = module(config(stop_at_kl=1e6, kl_stop_window=window))  # never reached: every iteration runs
    assert sorted(fit(unspent, 4, tmp_path)) == [1, 2, 3, 4] and not unspent.kl_budget_spent()


def exact_kl(model: PPOModule) -> float:
    """KL(policy || reference) summed over vocabulary and response tokens, mean over 32 sampled responses."""
    batch = left_pad([Prompts(32, seed=1)[i] for i in range(32)])
    torch.manual_seed(0)
    r = model.rollout(batch["input_ids"], batch["attention_mask"])
    with torch.no_grad():
        logp, ref_logp = (
            torch.log_softmax(gpt(r.sequences, attention_mask=r.attention_mask)[:, r.prompt_len - 1 : -1], dim=-1)
            for gpt in (model.model, model.reference)
        )
    per_token = (logp.exp() * (logp - ref_logp)).sum(dim=-1)  # (B, N)
    return float((per_token * r.mask).sum(dim=1).mean())


def test_huge_beta_keeps_kl_near_zero(tmp_path: Path) -> None:
    huge, usual = module(config(init_kl_coef=100.0)), module(config())
    stats = fit(huge, 8, tmp_path)
    fit(usual, 8, tmp_path)
    reward = [stats[i]["ppo/reward"] for i in range(1, 9)]
    # measured: 0.08 vs 1.2 nats. Not 0: whitening rescales any advantage to unit size, so every update moves the
    # policy and the penalty pulls it back; over 16 iterations it levels off at ~0.08, while with no penalty (and
    # no reward) the same noise drifts it steadily, to ~0.3 by iteration 8 and ~0.6 by 16
    huge_kl, usual_kl = exact_kl(huge), exact_kl(usual)
    assert huge_kl < 0.15 and usual_kl > 5 * huge_kl, (huge_kl, usual_kl)
    assert max(abs(stats[i]["ppo/kl"]) for i in stats) < 0.5  # the logged k1 estimate: noisy, at times negative
    assert max(reward) < 0.6, reward  # the reward could not pull the policy away (0.16 at random)
    assert all(stats[i]["ppo/beta"] == 100.0 for i in stats)  # fixed beta


def test_adaptive_kl_controller_moves_beta(tmp_path: Path) -> None:
    # KL far below target: error clipped to -0.2, beta *= 1 - 0.2 * 32 / 64 = 0.9 every iteration
    model = module(config(init_kl_coef=0.1, target_kl=6.0, kl_horizon=64))
    stats = fit(model, 4, tmp_path)
    betas = [stats[i]["ppo/beta"] for i in range(1, 5)]  # the beta of each iteration's rewards
    assert betas == pytest.approx([0.1, 0.09, 0.081, 0.0729])
    assert model.kl_controller.beta == pytest.approx(0.06561)


def test_logs_exactly_the_documented_metrics(tmp_path: Path) -> None:
    logger = L.pytorch.loggers.CSVLogger(tmp_path, name="ppo", version=0)
    stats = fit(module(config()), 2, tmp_path, logger=logger)
    assert (
        set(stats[2])
        == set(METRICS)
        == {
            "ppo/reward",
            "ppo/kl",
            "ppo/entropy",
            "ppo/clipfrac",
            "ppo/approx_kl",
            "ppo/value_loss",
            "ppo/policy_loss",
            "ppo/response_len",
            "ppo/eos_rate",
            "ppo/beta",
            "ppo/episodes_per_sec",
            "ppo/time_generation_s",
            "ppo/time_update_s",
        }
    )
    assert all(math.isfinite(v) for v in stats[2].values())
    assert 1 <= stats[2]["ppo/response_len"] <= 8 and 0 <= stats[2]["ppo/eos_rate"] <= 1
    assert 0 < stats[2]["ppo/entropy"] <= math.log(V) + 1e-4
    assert stats[2]["ppo/time_generation_s"] > 0 and stats[2]["ppo/time_update_s"] > 0
    with open(tmp_path / "ppo" / "version_0" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert set(rows[0]) == {"step", "epoch", *METRICS}
    assert [row["step"] for row in rows] == ["0", "1"]  # the logger's step counts iterations


def test_planted_nan_reward_raises_unhealthy_run_before_any_update(tmp_path: Path) -> None:
    calls = []

    def nan_on_third_call(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        score = target_count(ids, mask)
        return score.fill_(float("nan")) if len(calls) == 3 else score

    model = module(config(), reward=nan_on_third_call)
    with pytest.raises(UnhealthyRun) as raised:
        fit(model, 5, tmp_path)
    error = raised.value
    assert error.iteration == 3
    assert len(error.reasons) == 1 and error.reasons[0].startswith("ppo/reward is nan"), error.reasons
    assert "iteration 3" in str(error) and "ppo/reward" in str(error)
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the NaN never reached the weights
    assert model.global_step == 2 * model.config.steps_per_iteration
    assert pickle.loads(pickle.dumps(error)).reasons == error.reasons  # survives Prefect / subprocess boundaries


def test_an_update_that_breaks_the_weights_stops_the_run_in_its_own_iteration(tmp_path: Path) -> None:
    """The last optimizer step of iteration 2 writes a NaN into one weight after every loss of the iteration was
    computed: the iteration's own health check stops the run (and the stage rolls back), rather than the next
    rollout's sampling failing on NaN logits outside the health check."""
    model = module(config(rollout_batch_size=16, minibatch_size=8, ppo_epochs=1))  # 2 optimizer steps an iteration

    class BreakWeights(L.Callback):
        def on_train_start(self, trainer: L.Trainer, pl_module: PPOModule) -> None:
            steps, weight = [], pl_module.model.transformer.h[0].mlp.c_fc.weight

            def after_step(optimizer, args, kwargs) -> None:
                steps.append(1)
                if len(steps) == 4:
                    with torch.no_grad():
                        weight[0, 0] = float("nan")

            trainer.optimizers[0].register_step_post_hook(after_step)

    with pytest.raises(UnhealthyRun) as raised:
        fit(model, 4, tmp_path, callbacks=[BreakWeights()])
    assert raised.value.iteration == 2
    assert raised.value.reasons == ["policy/nonfinite_weights is nan, not a finite number: the run diverged"]


def test_rollout_logprobs_are_shifted_by_one_and_the_scorer_sees_right_aligned_texts() -> None:
    seen = {}

    def zero_score(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        seen["ids"], seen["mask"] = ids, mask
        return torch.zeros(ids.size(0))

    model = module(config(missing_eos_penalty=-1.0), reward=zero_score)
    batch = left_pad([Prompts(32, seed=1)[i] for i in range(32)])
    torch.manual_seed(0)
    r = model.rollout(batch["input_ids"], batch["attention_mask"])
    P = r.prompt_len
    has_eos = ((r.sequences[:, P:] == EOS) & r.mask.bool()).any(dim=1)
    assert 0 < int(has_eos.sum()) < 32  # both kinds of response are in this batch
    for i in range(32):
        text = r.sequences[i][r.attention_mask[i].bool()]  # the real tokens: prompt, then response up to EOS
        n = int(r.mask[i].sum())
        alone = torch.log_softmax(model.model(text[None])[0].float(), dim=-1)  # the row without any padding
        expected = alone[-n - 1 : -1].gather(1, text[-n:, None]).squeeze(1)  # position t predicts token t + 1
        torch.testing.assert_close(r.logp[i, :n], expected, atol=1e-5, rtol=0)
        assert torch.equal(seen["ids"][i, : len(text)], text)  # right-aligned: real tokens first ...
        assert seen["mask"][i].tolist() == [1] * len(text) + [0] * (seen["mask"].size(1) - len(text))  # ... then pad
    assert torch.equal(r.logp, r.ref_logp) and not r.kl.any()  # the policy starts as the reference
    assert torch.equal(r.rewards.sum(dim=1), -1.0 * (~has_eos).float())  # missing-EOS penalty, KL 0
    assert (r.rewards[r.mask == 0] == 0).all() and (r.advantages[r.mask == 0] == 0).all()


def test_rollout_scores_in_chunks_of_forward_batch_size_as_in_one() -> None:
    """The scoring forwards (policy, reference, reward) run forward_batch_size episodes at a time, not the update's
    minibatches; the chunking changes nothing a rollout returns."""
    chunks = []

    def counting_score(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        chunks.append(ids.size(0))
        return target_count(ids, mask)

    batch = left_pad([Prompts(32, seed=1)[i] for i in range(32)])
    rollouts = {}
    for size in (5, 64):
        model = module(config(forward_batch_size=size, minibatch_size=4), reward=counting_score)
        torch.nn.init.normal_(model.value_head.linear.weight)  # values that differ by position and row
        chunks.clear()
        torch.manual_seed(0)
        rollouts[size] = model.rollout(batch["input_ids"], batch["attention_mask"])
        assert chunks == ([5] * 6 + [2] if size == 5 else [32])
    chunked, whole = rollouts[5], rollouts[64]
    assert torch.equal(chunked.sequences, whole.sequences)
    for name in ("logp", "ref_logp", "values", "score", "advantages", "returns"):
        torch.testing.assert_close(getattr(chunked, name), getattr(whole, name), atol=1e-5, rtol=1e-5)


def test_bf16_mixed_with_a_reward_model(tmp_path: Path) -> None:
    torch.manual_seed(1)
    rm = RewardModel(GPTConfig(vocab_size=V, block_size=32, n_layer=1, n_head=2, n_embd=16))
    model = module(config(rollout_batch_size=16, minibatch_size=8, ppo_epochs=1), reward=rm)
    checkpoints = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="{step}", save_last=True)
    stats = fit(model, 2, tmp_path, precision="bf16-mixed", enable_checkpointing=True, callbacks=[checkpoints])
    assert all(math.isfinite(v) for v in stats[2].values()), stats
    assert not rm.training and not model.reference.training  # the frozen models stay in eval mode
    state = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["state_dict"]
    assert {k.split(".")[0] for k in state} == {"model", "value_head"}  # frozen models are not in checkpoints


def test_bf16_mixed_with_lora_trains_as_with_a_weight_cast_per_forward(tmp_path: Path, monkeypatch) -> None:
    """The frozen weights (LoRA base, reference, reward model) cast once per rollout's scoring and per update
    (generation.autocast_weights) rather than at each forward: the same run, and nothing left cast after it."""

    casts_seen = []  # per autocast_weights block of the cast-once run: were weights bf16 inside it?
    real = ppo_module.autocast_weights

    @contextlib.contextmanager
    def spy(model, keep=(), **kw):
        with real(model, keep, **kw):
            casts_seen.append(any(p.dtype == torch.bfloat16 for p in model.parameters()))
            yield

    def run(cast_once: bool) -> tuple[dict, dict]:
        if cast_once:
            monkeypatch.setattr(ppo_module, "autocast_weights", spy)
        else:  # the oracle, PPO as before: autocast casts every frozen weight at each forward (sampling unchanged)
            monkeypatch.setattr(ppo_module, "autocast_weights", lambda model, keep=(), **kw: contextlib.nullcontext())
        torch.manual_seed(1)
        rm = RewardModel(GPTConfig(vocab_size=V, block_size=32, n_layer=1, n_head=2, n_embd=16))
        policy = tiny_gpt(0)
        cfg = config(rollout_batch_size=16, minibatch_size=8, ppo_epochs=2)
        model = PPOModule(policy, copy.deepcopy(policy), rm, cfg, eos_id=EOS, pad_id=PAD, lora={"r": 4, "alpha": 8})
        stats = fit(model, 2, tmp_path / str(cast_once), precision="bf16-mixed")
        assert all(p.dtype == torch.float32 for p in model.parameters())  # every original back in place
        return stats, {k: v.clone() for k, v in model.state_dict().items()}

    once, per_forward = run(True), run(False)
    assert casts_seen and all(casts_seen)  # the casts did happen in the first run (autocast was on)
    assert {i: {k: v for k, v in s.items() if k not in TIMES} for i, s in once[0].items()} == {
        i: {k: v for k, v in s.items() if k not in TIMES} for i, s in per_forward[0].items()
    }
    assert once[0][2]["ppo/approx_kl"] != 0  # the adapters moved the policy: the comparison is not of no-ops
    assert all(torch.equal(once[1][k], per_forward[1][k]) for k in once[1])


def test_in_one_bf16_autocast_region_every_minibatch_reads_the_weights_as_the_last_step_left_them() -> None:
    """torch.autocast caches its bf16 casts of trainable weights for the whole region (unless cache_enabled=False,
    as Lightning's bf16-mixed sets it) and never checks that they changed. A loop that runs an iteration in one
    region (bench/rlhf.py, a user's own) made every minibatch forward after the first step read the iteration's
    starting weights, so the ratios and the clipping never saw the steps taken: update() clears the cache after
    each step. The check: each minibatch's hidden states equal a forward with the cache off."""
    model = module(config(rollout_batch_size=16, minibatch_size=4, ppo_epochs=2, lr=1e-2))
    L.Fabric(accelerator="cpu", devices=1, precision="32-true").setup(model, model.configure_optimizers())
    original = model._response_logprobs
    gaps = []  # per policy forward of the update: |hidden states as read - hidden states with the cache off|

    def checked(policy, sequences, attention_mask, P, entropy_grad=False):
        logp, entropy, hidden = original(policy, sequences, attention_mask, P, entropy_grad)
        if torch.is_grad_enabled():  # the update's forwards (the rollout's run under no_grad)
            # under grad as the update's forward, so the same attention kernel (models.base.math_attention_fits)
            with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
                fresh = policy.hidden_states(sequences, attention_mask=attention_mask)[:, P - 1 : -1].detach()
            gaps.append((hidden.float() - fresh.float()).abs().max().item())
        return logp, entropy, hidden

    model._response_logprobs = checked
    prompts = left_pad([Prompts(16)[i] for i in range(16)])
    with torch.autocast("cpu", dtype=torch.bfloat16):  # one region, as bench/rlhf.py runs an iteration
        model.update(model.rollout(prompts["input_ids"], prompts["attention_mask"]))
    assert len(gaps) == model.config.steps_per_iteration  # 2 epochs x 4 minibatches
    assert max(gaps) == 0.0, gaps


def test_under_bf16_mixed_the_update_takes_float32_logits_and_a_bf16_lm_head_backward(tmp_path: Path) -> None:
    """The log-probs' logits are float32 (a bf16 logit rounds the log-prob by ~1e-2, noise in every ratio); the
    lm_head's backward matmuls run in bf16, as every other layer's under bf16-mixed (models.ppo.rollout.
    head_logprobs): in float32 they were the larger part of the head's cost."""
    from torch.utils._python_dispatch import TorchDispatchMode

    forward, backward = [], []  # input dtypes of the matmuls that read or make a vocabulary-wide (V) matrix

    class HeadMatmuls(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func in (torch.ops.aten.mm.default, torch.ops.aten.addmm.default):
                tensors = [a for a in args if isinstance(a, torch.Tensor)]
                if any(V in t.shape for t in tensors):  # V = 50: no other dimension of the tiny model has it
                    (forward if out.size(-1) == V else backward).append({t.dtype for t in tensors})
            return out

    model = module(config(rollout_batch_size=16, minibatch_size=8, ppo_epochs=1))
    update = model.update

    def watched_update(r, critic_only=False, order_seed=None):
        with HeadMatmuls():
            return update(r, critic_only, order_seed)

    model.update = watched_update
    fit(model, 1, tmp_path, precision="bf16-mixed")
    assert len(forward) == 2 and len(backward) == 4  # 2 minibatches: logits; gradients to hidden states and weight
    assert all(d == {torch.float32} for d in forward), forward
    assert all(d == {torch.bfloat16} for d in backward), backward


def test_exact_resume_from_mid_run_checkpoint(tmp_path: Path) -> None:
    # 96 prompts in batches of 32: iteration 4 opens the loader's second epoch; adaptive beta is state too
    cfg = config(target_kl=0.5, kl_horizon=64)

    def run(name: str, ckpt_path: Path | None, seed: int) -> dict[int, dict[str, float]]:
        model = module(cfg)  # the same policy and reference every time (seed 0)
        torch.manual_seed(seed)  # resumed: sampling must follow the checkpoint's RNG, not this
        checkpoints = L.pytorch.callbacks.ModelCheckpoint(
            dirpath=tmp_path / name, filename="{step}", every_n_train_steps=2 * cfg.steps_per_iteration, save_top_k=-1
        )
        return fit(model, 4, tmp_path, ckpt_path=ckpt_path, enable_checkpointing=True, callbacks=[checkpoints])

    full = run("full", None, seed=0)
    ckpt = tmp_path / "full" / f"step={2 * cfg.steps_per_iteration}.ckpt"
    resumed = run("resumed", ckpt, seed=123)
    assert sorted(resumed) == [3, 4]
    for i in (3, 4):
        for name in METRICS:
            if name not in TIMES:
                assert resumed[i][name] == pytest.approx(full[i][name], abs=1e-6), (i, name)
    assert full[3]["ppo/beta"] != full[4]["ppo/beta"]
    checkpoint = torch.load(ckpt, weights_only=True)
    assert checkpoint["kl_controller"] == {"beta": pytest.approx(full[3]["ppo/beta"])}
    assert checkpoint["kl_history"] == pytest.approx([full[1]["ppo/kl"], full[2]["ppo/kl"]])  # the KL budget's
    assert set(checkpoint["rng_states"]) >= {"torch", "python"}
    assert checkpoint["hyper_parameters"]["config"]["target_kl"] == 0.5


def test_a_lora_policys_checkpoint_holds_what_trains_and_resumes_exactly(tmp_path: Path) -> None:
    """A LoRA policy's frozen base is the SFT model's, unchanged by training: checkpoints leave it out (on SmolLM2
    they were 540 MB every 2 iterations) and resume takes it from the module, as it takes the reference."""
    cfg = config()
    steps = cfg.steps_per_iteration

    def run(name: str, ckpt_path: Path | None, seed: int) -> tuple[dict, PPOModule]:
        policy = tiny_gpt(0)
        model = PPOModule(policy, copy.deepcopy(policy), target_count, cfg, EOS, PAD, lora={"r": 4, "alpha": 8})
        torch.manual_seed(seed)  # resumed: sampling must follow the checkpoint's RNG, not this
        checkpoints = L.pytorch.callbacks.ModelCheckpoint(
            dirpath=tmp_path / name, filename="{step}", every_n_train_steps=2 * steps, save_top_k=-1
        )
        stats = fit(model, 4, tmp_path, ckpt_path=ckpt_path, enable_checkpointing=True, callbacks=[checkpoints])
        return stats, model

    full, _ = run("full", None, seed=0)
    ckpt = tmp_path / "full" / f"step={2 * steps}.ckpt"
    resumed, model = run("resumed", ckpt, seed=123)
    assert sorted(resumed) == [3, 4]
    for i in (3, 4):
        for name in METRICS:
            if name not in TIMES:
                assert resumed[i][name] == pytest.approx(full[i][name], abs=1e-6), (i, name)
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    trained = {f"model.{n}" for n, p in model.model.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in k for k in trained)
    assert set(state) == trained | {"value_head.linear.weight", "value_head.linear.bias"}


def test_a_lora_policys_reference_is_the_policy_with_its_adapters_off(tmp_path: Path) -> None:
    """from_base with LoRA keeps no copy of the base as the reference (TRL's way): the policy with its adapters off
    gives the frozen copy's log-probs to the bit, before and after the adapters moved."""
    lora = {"r": 4, "alpha": 8}
    cfg = config(rollout_batch_size=16, minibatch_size=8, ppo_epochs=1, lr=1e-2)
    shared = PPOModule.from_base(tiny_gpt(0), reward=target_count, config=cfg, eos_id=EOS, pad_id=PAD, lora=lora)
    policy = tiny_gpt(0)  # the same weights and, drawn next, the same adapters' initialisation
    copied = PPOModule(policy, copy.deepcopy(policy), target_count, cfg, EOS, PAD, lora=lora)
    assert shared.reference is None and not any(k.startswith("reference.") for k in shared.state_dict())
    assert PPOModule.from_base(tiny_gpt(0), reward=target_count, config=cfg, eos_id=EOS, pad_id=PAD).reference

    batch = left_pad([Prompts(16, seed=2)[i] for i in range(16)])
    first = []
    for m in (shared, copied):
        torch.manual_seed(0)
        first.append(m.rollout(batch["input_ids"], batch["attention_mask"]))
    assert torch.equal(first[0].ref_logp, first[1].ref_logp) and torch.equal(first[0].logp, first[0].ref_logp)
    stats = {}
    for name, m in (("shared", shared), ("copied", copied)):
        torch.manual_seed(1)  # the same sampling seeds and minibatch orders in both fits
        stats[name] = fit(m, 3, tmp_path / name, prompts=48)
    for i in (1, 2, 3):  # the KL to the reference: the same reference log-probs all along
        assert stats["shared"][i]["ppo/kl"] == stats["copied"][i]["ppo/kl"], i
    assert abs(stats["shared"][3]["ppo/kl"]) > 1e-3  # the adapters moved: the reference is not the policy (k1: +-)
    layers = [m for m in shared.model.modules() if type(m).__module__.startswith("peft")]
    assert layers and not any(getattr(m, "disable_adapters", False) for m in layers)  # switched back on
    assert all(p.requires_grad for n, p in shared.model.named_parameters() if "lora_" in n)


def test_invalid_setups_fail_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="must divide rollout_batch_size"):
        config(minibatch_size=12)
    with pytest.raises(ValueError, match="kl_estimator"):
        config(kl_estimator="k2")
    policy = tiny_gpt()
    with pytest.raises(ValueError, match="deepcopy"):
        PPOModule(policy, policy, target_count, config(), eos_id=EOS, pad_id=PAD)
    with pytest.raises(ValueError, match="reference=None takes the LoRA policy"):
        PPOModule(policy, None, target_count, config(), eos_id=EOS, pad_id=PAD)
    model = module(config())
    batch = left_pad([Prompts(32)[i] for i in range(32)])
    with pytest.raises(ValueError, match="left-padded"):
        model.rollout(batch["input_ids"].flip(1), batch["attention_mask"].flip(1))
    with pytest.raises(ValueError, match="rollout_batch_size"):
        model.rollout(batch["input_ids"][:8], batch["attention_mask"][:8])


def test_value_head_starts_at_zero_with_its_own_learning_rate() -> None:
    model = module(config(lr=1e-5, value_lr=1e-3))
    hidden = torch.randn(4, 6, model.model.config.n_embd)
    assert torch.equal(model.value_head(hidden), torch.zeros(4, 6))  # no constant offset for GAE to read as reward
    head = {id(p) for p in model.value_head.parameters()}
    groups = model.configure_optimizers().param_groups
    assert [g["lr"] for g in groups if {id(p) for p in g["params"]} == head] == [1e-3]
    assert all(g["lr"] == 1e-5 for g in groups if not head & {id(p) for p in g["params"]})


def test_rewards_are_sft_z_scores_so_the_missing_eos_penalty_is_in_standard_deviations() -> None:
    # the same policy and samples, scored by target_count and by 1000 * target_count + 5: the same rewards
    batch = left_pad([Prompts(32, seed=1)[i] for i in range(32)])

    def rollout(reward):
        model = module(config(missing_eos_penalty=-1.0, max_new_tokens=8), reward=reward)
        torch.manual_seed(0)
        return model, model.rollout(batch["input_ids"], batch["attention_mask"])

    model, r = rollout(target_count)
    _, scaled = rollout(lambda ids, mask: 1000 * target_count(ids, mask) + 5)
    torch.testing.assert_close(scaled.rewards, r.rewards, atol=1e-4, rtol=0)
    has_eos = ((r.sequences[:, r.prompt_len :] == EOS) & r.mask.bool()).any(dim=1)
    assert 0 < int(has_eos.sum()) < 32
    z = (r.score - r.score.mean()) / r.score.std()
    torch.testing.assert_close(r.rewards.sum(dim=1), z - 1.0 * (~has_eos).float(), atol=1e-5, rtol=0)  # KL 0
    assert model.reward_scale.state_dict() == {
        "mean": pytest.approx(float(r.score.mean())),
        "std": pytest.approx(float(r.score.std())),
    }


def test_critic_warmup_moves_only_the_value_head(tmp_path: Path) -> None:
    model = module(config(critic_warmup_iterations=1, ppo_epochs=1))
    before = copy.deepcopy(model.model.state_dict())
    fit(model, 1, tmp_path)
    assert all(torch.equal(before[k], v) for k, v in model.model.state_dict().items())  # the policy is still SFT
    assert model.value_head.linear.weight.abs().sum() > 0  # the critic learnt


def test_health_floor_is_relative_to_the_first_rollouts_length(tmp_path: Path) -> None:
    # a floor above the SFT policy's own length stops the run at once, naming the relative bound
    model = module(config(), health=HealthBounds(min_length_fraction=1.5))
    with pytest.raises(UnhealthyRun) as raised:
        fit(model, 2, tmp_path)
    assert raised.value.iteration == 1 and "min_length_fraction * SFT length" in str(raised.value)
    assert model.sft_length == pytest.approx(raised.value.stats["response/length_mean"])


@pytest.mark.parametrize("method", ["grpo", "rloo"])
def test_group_methods_raise_the_reward_without_a_critic(tmp_path: Path, method: str) -> None:
    # 8 prompts x 4 samples = 32 episodes per iteration, as PPO's tests. At lr 1e-3 a tiny policy that has learnt
    # to say TARGET can move one token's probability more than tenfold in a late update (RLOO on this seed, at
    # iteration 12 of 12, the reward near 1.9): learning is tested here, that health bound on its own above
    health = HealthBounds(max_ratio=100.0)
    model = module(config(method=method, group_size=4, rollout_batch_size=8, minibatch_size=16), health=health)
    assert model.config.steps_per_iteration == 4 * 32 // 16
    head = copy.deepcopy(model.value_head.state_dict())
    stats = fit(model, 12, tmp_path)
    reward = [stats[i]["ppo/reward"] for i in range(1, 13)]
    first, last = sum(reward[:3]) / 3, sum(reward[-3:]) / 3
    assert last > first + 0.5, reward
    assert all(stats[i]["ppo/value_loss"] == 0.0 for i in stats)
    assert all(torch.equal(head[k], v) for k, v in model.value_head.state_dict().items())  # no critic trained


def test_group_rollout_samples_each_prompt_g_times_and_reads_advantages_from_its_group() -> None:
    model = module(config(method="rloo", group_size=4, rollout_batch_size=8, minibatch_size=16))
    batch = left_pad([Prompts(8, seed=1)[i] for i in range(8)])
    torch.manual_seed(0)
    r = model.rollout(batch["input_ids"], batch["attention_mask"])
    assert r.sequences.size(0) == 32
    prompts = r.sequences[:, : r.prompt_len].view(8, 4, -1)
    assert (prompts == prompts[:, :1]).all()  # rows 4k..4k+3 share prompt k
    returns = r.rewards.sum(dim=1).view(8, 4)  # KL 0 at the start: the z-scored counts
    expected = returns - (returns.sum(dim=1, keepdim=True) - returns) / 3  # leave-one-out baseline
    first_token = r.advantages[:, 0].view(8, 4)
    torch.testing.assert_close(first_token, expected, atol=1e-5, rtol=0)
    assert torch.equal(r.advantages, torch.where(r.mask.bool(), r.advantages[:, :1], 0.0))  # same on every token


def test_adaptive_kl_horizon_defaults_to_the_runs_episodes(tmp_path: Path) -> None:
    # 4 iterations of 32 episodes: horizon 128, so beta *= 1 - 0.2 * 32 / 128 = 0.95 per iteration
    model = module(config(init_kl_coef=0.1, target_kl=6.0))
    stats = fit(model, 4, tmp_path)
    assert model.kl_controller.horizon == 4 * 32
    assert [stats[i]["ppo/beta"] for i in range(1, 5)] == pytest.approx([0.1, 0.095, 0.09025, 0.0857375])


def test_fixed_length_rollouts_suppress_eos_and_the_missing_eos_penalty() -> None:
    """fixed_length: EOS is never drawn, every response is max_new_tokens long, no missing-EOS penalty, and the
    log-probs are of the distribution sampled from (the model's without EOS), not of the model's own."""
    batch = left_pad([Prompts(32, seed=1)[i] for i in range(32)])
    free = module(config(max_new_tokens=8))
    torch.manual_seed(0)
    assert bool((free.rollout(batch["input_ids"], batch["attention_mask"]).mask == 0).any())  # EOS stops some
    model = module(config(fixed_length=True, missing_eos_penalty=-1.0, max_new_tokens=8), reward=target_count)
    torch.manual_seed(0)
    r = model.rollout(batch["input_ids"], batch["attention_mask"])
    response = r.sequences[:, r.prompt_len :]
    assert response.size(1) == 8 and bool(r.mask.all()) and not bool((response == EOS).any())
    z = (r.score - r.score.mean()) / r.score.std()
    torch.testing.assert_close(r.rewards.sum(dim=1), z, atol=1e-5, rtol=0)  # no penalty, KL 0
    with torch.no_grad():
        own_logits = model.model(r.sequences, attention_mask=r.attention_mask)  # the model's own distribution
    logits = own_logits[:, r.prompt_len - 1 : -1].float()
    own = logits.log_softmax(-1).gather(-1, response.unsqueeze(-1)).squeeze(-1)
    eos_logp = logits.log_softmax(-1)[..., EOS]
    torch.testing.assert_close(r.logp, own - torch.log1p(-eos_logp.exp()), atol=1e-5, rtol=1e-5)


def test_fixed_length_below_temperature_one_keeps_every_log_prob_finite() -> None:
    """The temperature divides the logits before EOS is suppressed: the other order turns the suppressed logit
    (the most negative float) into -inf below temperature 1, and the entropy over the vocabulary into NaN. The
    log-probs are those of the tempered distribution without EOS, the one sampled from."""
    batch = left_pad([Prompts(8, seed=1)[i] for i in range(8)])
    model = module(config(fixed_length=True, temperature=0.7, max_new_tokens=6, rollout_batch_size=8, minibatch_size=4))
    torch.manual_seed(0)
    r = model.rollout(batch["input_ids"], batch["attention_mask"])
    logp, entropy, _ = model._response_logprobs(model.model, r.sequences, r.attention_mask, r.prompt_len)
    assert bool(torch.isfinite(logp).all()) and bool(torch.isfinite(entropy).all())
    with torch.no_grad():
        own = model.model(r.sequences, attention_mask=r.attention_mask)[:, r.prompt_len - 1 : -1].float() / 0.7
    own[..., EOS] = float("-inf")
    response = r.sequences[:, r.prompt_len :]
    expected = own.log_softmax(-1).gather(-1, response.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(r.logp, expected, atol=1e-5, rtol=1e-5)


def test_reward_controls_negate_and_shuffle_the_scores() -> None:
    scores = torch.tensor([3.0, 1.0, 2.0, 0.0, 5.0])
    assert torch.equal(controlled(scores, "none"), scores)
    assert torch.equal(controlled(scores, "negate"), -scores)
    torch.manual_seed(0)
    shuffled = controlled(scores, "shuffle")
    assert sorted(shuffled.tolist()) == sorted(scores.tolist()) and not torch.equal(shuffled, scores)
    drawn = [controlled(scores, "shuffle", torch.Generator().manual_seed(seed)) for seed in (1, 1, 2)]
    assert torch.equal(drawn[0], drawn[1]) and not torch.equal(drawn[0], drawn[2])  # a seed decides it
    with pytest.raises(ValueError, match="none, negate or shuffle"):
        controlled(scores, "invert")


@pytest.mark.parametrize("control", ["negate", "shuffle"])
def test_control_arms_do_not_learn_the_reward(tmp_path: Path, control: str) -> None:
    """The experiment's controls on the synthetic task where the real reward rises 0.1 -> 1.5 in 12 iterations
    (test_reward_rises_...): negated, the policy writes fewer target tokens; shuffled, it learns nothing.
    Measured (seed 0): negated 0.08 -> 0.01 (first and last three iterations), shuffled 0.10 -> 0.20."""
    stats = fit(module(config(reward_control=control)), 12, tmp_path)
    reward = [stats[i]["ppo/reward"] for i in range(1, 13)]  # the raw score, not what the control trained on
    first, last = sum(reward[:3]) / 3, sum(reward[-3:]) / 3
    if control == "negate":
        assert last < first, reward
    else:
        assert abs(last - first) < 0.3, reward

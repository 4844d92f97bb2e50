"""Tests of models.dpo: the DPO loss and sequence log-probs against hand-computed numbers, and real Lightning fits
of a tiny policy on CPU that learns a preference (responses with GOOD over responses with BAD) against a frozen
reference that stays put.

Batches are built here (pair_batch): alignops.data.preferences.collate_pairs has no labels yet, and DPO needs
them to know which tokens are the response."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from alignops.config import OptimConfig
from models.dpo import DPOModel, dpo_loss, sequence_logprob
from models.gpt import GPT, GPTConfig

PAD, GOOD, BAD = 0, 3, 4  # prompt tokens are 1 and 2, filler 5..15
CONFIG = GPTConfig(vocab_size=16, block_size=24, n_layer=2, n_head=2, n_embd=32)

Pair = tuple[list[int], list[int], list[int], float]  # prompt, chosen, rejected, weight


def pair_batch(pairs: list[Pair]) -> dict[str, torch.Tensor]:
    """collate_pairs' batch plus chosen_labels, rejected_labels: the ids, -100 on the prompt and the padding."""
    rows = [(p, c) for p, c, _, _ in pairs] + [(p, r) for p, _, r, _ in pairs]  # chosen rows first
    T = max(len(p) + len(x) for p, x in rows)
    ids = torch.full((len(rows), T), PAD)
    labels = torch.full((len(rows), T), -100)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for row, (prompt, response) in enumerate(rows):
        n = len(prompt) + len(response)
        ids[row, :n] = torch.tensor(prompt + response)
        labels[row, len(prompt) : n] = torch.tensor(response)
        mask[row, :n] = 1
    b = len(pairs)
    return dict(
        chosen_ids=ids[:b],
        chosen_mask=mask[:b],
        chosen_labels=labels[:b],
        rejected_ids=ids[b:],
        rejected_mask=mask[b:],
        rejected_labels=labels[b:],
        weight=torch.tensor([w for *_, w in pairs]),
    )


def pairs(n: int, seed: int) -> list[Pair]:
    """A short prompt, then two responses of random filler with GOOD (chosen) or BAD (rejected) at a random place
    and of random lengths, so neither position nor length tells which is chosen; weights 0.6 or 1.0."""
    g = torch.Generator().manual_seed(seed)
    randint = lambda lo, hi: int(torch.randint(lo, hi, (1,), generator=g))  # noqa: E731

    def response(token: int) -> list[int]:
        filler = [randint(5, 16) for _ in range(randint(2, 7))]
        filler.insert(randint(0, len(filler) + 1), token)
        return filler

    prompt = lambda: [randint(1, 3) for _ in range(randint(1, 4))]  # noqa: E731
    return [(prompt(), response(GOOD), response(BAD), 0.6 + 0.4 * randint(0, 2)) for _ in range(n)]


def loader(data: list[Pair], batch_size: int, shuffle: bool = False) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    return DataLoader(data, batch_size, shuffle=shuffle, generator=g, collate_fn=pair_batch)


def test_dpo_loss_hand_computed() -> None:
    same = torch.full((3,), -5.0)
    loss, stats = dpo_loss(same, same, same, same, beta=0.1)
    assert loss.item() == pytest.approx(math.log(2))  # policy == reference: no preference yet
    assert {k: v.item() for k, v in stats.items()} == {
        "rewards/chosen": 0.0,
        "rewards/rejected": 0.0,
        "rewards/accuracy": 0.0,  # a tie is not a win
        "rewards/margin": 0.0,
    }

    # pair 0: the policy moved +1 on chosen and -1 on rejected: d = 0.5 * (1 - (-1)) = 1; pair 1 did not move
    pc, pr = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -2.0])
    rc, rr = torch.tensor([-2.0, -2.0]), torch.tensor([-2.0, -2.0])
    l_win, l_even = math.log(1 + math.exp(-1)), math.log(2)  # -logsigmoid(1), -logsigmoid(0)
    loss, stats = dpo_loss(pc, pr, rc, rr, beta=0.5)
    assert loss.item() == pytest.approx((l_win + l_even) / 2)
    assert stats["rewards/chosen"].item() == pytest.approx(0.25)  # mean of 0.5 * (+1) and 0
    assert stats["rewards/rejected"].item() == pytest.approx(-0.25)
    assert stats["rewards/margin"].item() == pytest.approx(0.5)
    assert stats["rewards/accuracy"].item() == pytest.approx(0.5)

    weighted, _ = dpo_loss(pc, pr, rc, rr, beta=0.5, weights=torch.tensor([3.0, 1.0]))
    assert weighted.item() == pytest.approx((3 * l_win + l_even) / 4)
    # conservative DPO: with probability 0.1 the label is flipped, and -logsigmoid(-1) = log(1 + e)
    smoothed, _ = dpo_loss(pc[:1], pr[:1], rc[:1], rr[:1], beta=0.5, label_smoothing=0.1)
    assert smoothed.item() == pytest.approx(0.9 * l_win + 0.1 * math.log(1 + math.e))

    # the gradient raises the chosen log-prob and lowers the rejected one, by beta * sigmoid(-d) / B
    c, r = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    dpo_loss(c, r, torch.zeros(2), torch.zeros(2), beta=0.5)[0].backward()
    assert c.grad.tolist() == pytest.approx([-0.125, -0.125]) and r.grad.tolist() == pytest.approx([0.125, 0.125])


def test_sequence_logprob_hand_computed() -> None:
    # vocabulary of 3; row 0: prompt token, two response tokens, padding; row 1: nothing labelled
    logits = torch.zeros(2, 4, 3)
    logits[0, 0] = torch.tensor([0.0, math.log(2), 0.0])  # predicts token 1 with p = 2 / 4
    logits[0, 1] = torch.tensor([math.log(3), 0.0, 0.0])  # predicts token 2 with p = 1 / 5
    logits[0, 2] = torch.tensor([100.0, -100.0, -100.0])  # predicts padding: must not count
    logits[0, 3] = torch.tensor([-100.0, -100.0, -100.0])  # the last position predicts nothing
    labels = torch.tensor([[-100, 1, 2, -100], [-100, -100, -100, -100]])
    logps = sequence_logprob(logits.bfloat16(), labels)
    assert logps.shape == (2,) and logps.dtype == torch.float32
    assert logps[0].item() == pytest.approx(math.log(0.5) + math.log(0.2), abs=2e-2)  # bf16 logits in
    assert logps[1].item() == 0.0
    assert sequence_logprob(logits, labels)[0].item() == pytest.approx(math.log(0.1), rel=1e-6)


def test_at_initialisation_policy_is_reference(cpu_trainer, tmp_path: Path) -> None:
    torch.manual_seed(0)
    sft = GPT(CONFIG)  # stands in for the SFT model
    model = DPOModel.from_base(sft, beta=0.5).eval()
    for gpt in (model.model, model.reference):
        assert torch.equal(gpt.transformer.h[0].attn.c_attn.weight, sft.transformer.h[0].attn.c_attn.weight)
    assert all(not p.requires_grad for p in model.reference.parameters())
    assert model.reference.transformer.wte.weight.data_ptr() != sft.transformer.wte.weight.data_ptr()  # a copy

    batch = pair_batch(pairs(6, seed=0))
    with torch.no_grad():
        pc, pr, rc, rr = model.pair_logps(batch)
        loss, stats = model.loss(batch)
    assert torch.equal(pc, rc) and torch.equal(pr, rr) and bool((pc < 0).all())
    assert loss.item() == pytest.approx(math.log(2))
    assert stats["rewards/chosen"].item() == 0.0 and stats["rewards/margin"].item() == 0.0
    metrics = cpu_trainer().validate(model, loader(pairs(7, seed=0), batch_size=3), verbose=False)[0]
    assert metrics == pytest.approx({"val/loss": math.log(2), "val/accuracy": 0.0, "val/margin": 0.0})

    # only the policy is optimized
    optimizer = model.configure_optimizers()["optimizer"]
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in model.model.parameters()}
    with pytest.raises(KeyError, match="chosen_labels"):
        model.loss({k: v for k, v in batch.items() if not k.endswith("labels")})


def test_dpo_learns_a_preference(cpu_trainer, tmp_path: Path) -> None:
    train, val = pairs(96, seed=1), pairs(40, seed=2)
    torch.manual_seed(0)
    sft = GPT(CONFIG)
    steps = 60
    model = DPOModel.from_base(
        sft,
        dropout=0.1,  # dropout in the policy, never in the reference
        beta=0.5,
        max_steps=steps,
        optim=OptimConfig(lr=3e-3, warmup_steps=5, weight_decay=0.0, beta2=0.999),
    )
    initial = copy.deepcopy(model.state_dict())
    t = cpu_trainer(max_steps=steps)
    before = t.validate(model, loader(val, batch_size=16), verbose=False)[0]
    t.fit(model, loader(train, batch_size=16, shuffle=True))

    assert not model.reference.training
    for name, p in model.model.named_parameters():  # no weight decay: only a gradient moves a parameter
        assert not torch.equal(p.detach(), initial[f"model.{name}"]), f"policy {name} did not change"
    for name, p in model.reference.state_dict().items():
        assert torch.equal(p, initial[f"reference.{name}"]), f"reference {name} changed"
    logged = {"train/loss", "train/accuracy", "train/lr", "dpo/rewards_chosen", "dpo/rewards_rejected", "dpo/margin"}
    assert logged <= set(t.callback_metrics)

    metrics = t.validate(model, loader(val, batch_size=16), verbose=False)[0]
    assert metrics["val/accuracy"] >= 0.9, metrics
    assert metrics["val/margin"] > before["val/margin"] + 1.0 and metrics["val/loss"] < 0.5 * math.log(2), metrics

    # whole-set metrics: uneven batches (7 + 7 + ... + 5) give what one batch of all 40 pairs gives
    uneven = t.validate(model, loader(val, batch_size=7), verbose=False)[0]
    with torch.no_grad():
        loss, stats = model.eval().loss(pair_batch(val))
    assert uneven["val/loss"] == pytest.approx(loss.item(), rel=1e-5)  # weighted by the pairs' weights
    assert uneven["val/accuracy"] == pytest.approx(stats["rewards/accuracy"].item())
    assert uneven["val/margin"] == pytest.approx(stats["rewards/margin"].item(), rel=1e-5)


def test_bf16_mixed_fit_and_checkpoint(cpu_trainer, tmp_path: Path) -> None:
    torch.manual_seed(0)
    sft = GPT(CONFIG)
    model = DPOModel.from_base(
        sft,
        beta=0.25,
        label_smoothing=0.1,
        max_steps=2,
        optim=OptimConfig(lr=1e-3, warmup_steps=0, weight_decay=0.0, beta2=0.999),
    )
    t = cpu_trainer(max_steps=2, precision="bf16-mixed", enable_checkpointing=True)
    t.fit(model, loader(pairs(8, seed=3), batch_size=4))
    assert math.isfinite(t.callback_metrics["train/loss"].item())

    ckpt = next((tmp_path / "checkpoints").glob("*.ckpt"))
    restored = DPOModel.load_from_checkpoint(ckpt)  # the reference travels in the checkpoint
    assert restored.hparams.beta == 0.25 and restored.hparams.label_smoothing == 0.1
    assert torch.equal(restored.reference.transformer.wte.weight, sft.transformer.wte.weight)
    assert torch.equal(restored.model.transformer.wte.weight, model.model.transformer.wte.weight)
    assert not torch.equal(restored.model.transformer.wte.weight, sft.transformer.wte.weight)
    assert all(not p.requires_grad for p in restored.reference.parameters()) and not restored.reference.training
    with pytest.raises(ValueError, match="beta"):
        DPOModel(CONFIG, beta=0.0)


def test_a_pairs_prompt_runs_once_with_the_log_probs_and_gradients_of_one_forward() -> None:
    """pair_logps runs each distinct prompt once (its last token with the responses: it predicts their first) and
    gets the log-probs and policy gradients of one forward over every row (sequence_logprob on the full logits)."""
    from models.dpo import response_logprob

    torch.manual_seed(0)
    model = DPOModel.from_base(GPT(CONFIG), beta=0.5).eval()
    prompts = [[1, 2, 1], [1, 2, 1], [2, 2], [1]]
    data = [(prompt, *rest) for prompt, (_, *rest) in zip(prompts, pairs(4, seed=1), strict=True)]
    data[2] = (data[2][0], [GOOD], data[2][2], 1.0)  # a one-token response
    batch = pair_batch(data)
    seen = []
    hook = model.model.transformer.wte.register_forward_hook(lambda _m, args, _out: seen.append(args[0].size(0)))
    pc, pr, rc, rr = model.pair_logps(batch)
    hook.remove()
    # one forward of 4 packed rows, not 8: pairs 0 and 1 share their prompt but its last token (2 + 7 + 5 and
    # 2 + 7 + 6 tokens: 2 + 7 + 5 + 7 + 6 does not fit 2 x 9), pair 2's prompt but its last token under its two
    # responses, pair 3's 1-token prompt has none to share (its rows side by side, 8 + 8)
    assert seen == [4]
    dpo_loss(pc, pr, rc, rr, beta=0.5)[0].backward()
    grads = {n: p.grad.clone() for n, p in model.model.named_parameters()}
    model.zero_grad()

    ids = torch.cat([batch["chosen_ids"], batch["rejected_ids"]])
    mask = torch.cat([batch["chosen_mask"], batch["rejected_mask"]])
    labels = torch.cat([batch["chosen_labels"], batch["rejected_labels"]])
    whole = sequence_logprob(model.model(ids, attention_mask=mask), labels)
    torch.testing.assert_close(torch.cat([pc, pr]), whole, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        response_logprob(model.reference, ids, mask, labels), whole.detach(), atol=1e-5, rtol=1e-5
    )
    dpo_loss(*whole.chunk(2), rc, rr, beta=0.5)[0].backward()
    for name, p in model.model.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, atol=1e-5, rtol=1e-4, msg=name)

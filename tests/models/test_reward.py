"""Tests of models.reward: the pairwise loss against hand-computed numbers, and real Lightning fits of a tiny
reward model on CPU that learns a preference ("good" over "bad"), reads its reward at the last real token and
reports whole-set validation metrics."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from alignops.config import OptimConfig
from alignops.data.loaders import pad_id, resumable_loader
from alignops.data.preferences import PairDataset, collate_pairs, expand_rankings, length_baseline_accuracy
from alignops.data.tokenizer import chat_template, load_tokenizer, train_tokenizer
from models.gpt import GPT, GPTConfig
from models.reward import RewardModel, pairwise_loss

WORDS = "the a cat dog sat ran on under mat log film book red blue sky apple was and".split()  # noqa: SIM905
PROMPT = "Review?"


def rankings(n: int, seed: int) -> list[dict]:
    """Two responses of random filler with "good" (better) or "bad" (worse) at a random place, in random order
    and of random lengths, so neither position nor length tells which is better."""
    g = torch.Generator().manual_seed(seed)
    randint = lambda lo, hi: int(torch.randint(lo, hi, (1,), generator=g))  # noqa: E731

    def response(word: str) -> str:
        words = [WORDS[randint(0, len(WORDS))] for _ in range(randint(2, 7))]
        words.insert(randint(0, len(words) + 1), word)
        return " ".join(words)

    records = []
    for _ in range(n):
        flip = randint(0, 2)
        responses = [response("bad"), response("good")] if flip else [response("good"), response("bad")]
        records.append(
            {
                "prompt": PROMPT,
                "responses": responses,
                "ranking": [1, 0] if flip else [0, 1],
                "annotator": "test",
                "source": "test/good-bad",
                "derived": True,
                "agreement": 0.6 + 0.4 * randint(0, 2),  # 0.6 or 1.0: the loss is weighted
            }
        )
    return records


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory):
    texts = [chat_template(PROMPT, r) for rec in rankings(60, seed=0) for r in rec["responses"]]
    info = train_tokenizer(texts, vocab_size=300, min_frequency=1, out_dir=tmp_path_factory.mktemp("tok"))
    return load_tokenizer(Path(info.path))


def gpt_config(tok) -> GPTConfig:
    return GPTConfig(vocab_size=tok.get_vocab_size(), block_size=32, n_layer=2, n_head=2, n_embd=32)


def loader(records: list[dict], tok, batch_size: int, shuffle: bool = False):
    ds = PairDataset(expand_rankings(records), tok, max_len=32)
    return resumable_loader(ds, batch_size, seed=0, shuffle=shuffle, collate_fn=collate_pairs(pad_id(tok)))


def test_pairwise_loss_hand_computed() -> None:
    zero = torch.zeros(3)
    assert pairwise_loss(zero, zero).item() == pytest.approx(math.log(2))  # no preference yet: log 2
    chosen, rejected = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0])
    l_win, l_even = math.log(1 + math.exp(-2)), math.log(2)
    assert pairwise_loss(chosen, rejected).item() == pytest.approx((l_win + l_even) / 2)
    weighted = pairwise_loss(chosen, rejected, weights=torch.tensor([3.0, 1.0]))
    assert weighted.item() == pytest.approx((3 * l_win + l_even) / 4)
    # a margin shifts the difference: a lead of 1 with margin 1 is no lead at all
    assert pairwise_loss(torch.ones(2), zero[:2], margin=1.0).item() == pytest.approx(math.log(2))
    assert pairwise_loss(chosen, rejected, margin=0.5).item() == pytest.approx(
        pairwise_loss(chosen - 0.5, rejected).item()
    )
    # the gradient pushes chosen up and rejected down, by sigmoid(-diff) / B
    c, r = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    pairwise_loss(c, r).backward()
    assert c.grad.tolist() == pytest.approx([-0.25, -0.25]) and r.grad.tolist() == pytest.approx([0.25, 0.25])


def test_centering_term_pins_the_offset() -> None:
    chosen, rejected = torch.tensor([1.0, 3.0]), torch.tensor([2.0, -1.0])
    plain = pairwise_loss(chosen, rejected)
    # Bradley-Terry alone cannot see a reward offset shared by all texts ...
    assert pairwise_loss(chosen + 5, rejected + 5).item() == pytest.approx(plain.item())
    # ... the centering term can: center_coef * mean((r_c + r_r)^2) = 0.5 * (3^2 + 2^2) / 2
    centered = pairwise_loss(chosen, rejected, center_coef=0.5)
    assert centered.item() == pytest.approx(plain.item() + 0.5 * (9 + 4) / 2)
    assert pairwise_loss(chosen + 5, rejected + 5, center_coef=0.5).item() > centered.item()


def test_reward_model_learns_a_preference(cpu_trainer, tok, tmp_path: Path) -> None:
    train, val = rankings(96, seed=1), rankings(48, seed=2)
    val_pairs = expand_rankings(val)
    assert 0.3 < length_baseline_accuracy(val_pairs) < 0.7  # length says nothing here
    torch.manual_seed(0)
    sft = GPT(gpt_config(tok))  # stands in for the SFT model the reward model starts from
    steps = 80
    model = RewardModel.from_base(
        sft, max_steps=steps, optim=OptimConfig(lr=3e-3, weight_decay=0.0, warmup_steps=5, beta2=0.999)
    )
    assert torch.equal(model.model.transformer.h[0].attn.c_attn.weight, sft.transformer.h[0].attn.c_attn.weight)
    initial = copy.deepcopy(model.state_dict())
    t = cpu_trainer(max_steps=steps)
    t.fit(model, loader(train, tok, batch_size=16, shuffle=True))

    # no weight decay: a parameter changed only if a gradient moved it (centering moves the biases)
    for name, p in model.named_parameters():
        assert p.requires_grad and not torch.equal(p.detach(), initial[name]), f"{name} did not change"
    assert {"train/loss", "train/accuracy", "train/lr"} <= set(t.callback_metrics)

    metrics = t.validate(model, loader(val, tok, batch_size=16), verbose=False)[0]
    expected = {f"val/{m}" for m in ("loss", "accuracy", "reward_mean", "reward_std", "margin_mean")}
    assert set(metrics) == expected
    assert metrics["val/accuracy"] >= 0.9, metrics
    # soft targets: the loss cannot go below the targets' own entropy (0.673 nats at 0.6, 0 at 1.0)
    floor = sum(-(p.weight * math.log(p.weight) + (1 - p.weight) * math.log1p(-p.weight + 1e-12)) for p in val_pairs)
    assert metrics["val/margin_mean"] > 1.0 and metrics["val/loss"] - floor / len(val_pairs) < 0.3, metrics
    assert abs(metrics["val/reward_mean"]) < metrics["val/reward_std"]  # centred: the spread dominates


def test_val_metrics_cover_the_whole_set(cpu_trainer, tok, tmp_path: Path) -> None:
    records = rankings(7, seed=3)  # batches of 3: 3 + 3 + 1 pairs, with weights 0.6 and 1.0
    torch.manual_seed(0)
    model = RewardModel(gpt_config(tok), margin=0.5, center_coef=0.1)
    val = loader(records, tok, batch_size=3)
    metrics = cpu_trainer().validate(model, val, verbose=False)[0]

    model.eval()
    batch = collate_pairs(pad_id(tok))([val.dataset[i] for i in range(len(val.dataset))])
    with torch.no_grad():
        chosen, rejected = model.pair_rewards(batch)
    t = batch["weight"]  # the pairs' agreement: soft targets
    d = chosen - rejected - 0.5
    bt = -(t * F.logsigmoid(d) + (1 - t) * F.logsigmoid(-d)).mean()
    rewards = torch.cat([chosen, rejected])
    assert metrics["val/loss"] == pytest.approx((bt + 0.1 * ((chosen + rejected) ** 2).mean()).item(), rel=1e-5)
    assert metrics["val/loss"] == pytest.approx(
        pairwise_loss(chosen, rejected, margin=0.5, center_coef=0.1, targets=t).item(), rel=1e-5
    )
    assert metrics["val/accuracy"] == pytest.approx((chosen > rejected).float().mean().item())
    assert metrics["val/reward_mean"] == pytest.approx(rewards.mean().item(), rel=1e-4, abs=1e-6)
    assert metrics["val/reward_std"] == pytest.approx(rewards.std().item(), rel=1e-4)
    assert metrics["val/margin_mean"] == pytest.approx((chosen - rejected).mean().item(), rel=1e-4, abs=1e-6)


def test_reward_is_read_at_the_last_real_token(tok) -> None:
    torch.manual_seed(0)
    model = RewardModel(gpt_config(tok)).eval()
    ids = [tok.encode(chat_template(PROMPT, text)).ids for text in ("good film", "a bad book was on the mat")]
    T = max(map(len, ids))
    batch = torch.full((2, T), pad_id(tok))
    mask = torch.zeros(2, T, dtype=torch.long)
    for row, x in enumerate(ids):
        batch[row, : len(x)], mask[row, : len(x)] = torch.tensor(x), 1

    rewards = model.score(batch, mask)
    assert rewards.shape == (2,) and rewards.dtype == torch.float32 and not rewards.requires_grad
    alone = torch.cat([model.score(torch.tensor([x])) for x in ids])  # no padding, no mask
    assert torch.allclose(rewards, alone, atol=1e-5)
    extra = 5  # more right padding changes nothing
    padded = torch.cat([batch, torch.full((2, extra), pad_id(tok))], dim=1)
    assert torch.allclose(model.score(padded, F.pad(mask, (0, extra))), rewards, atol=1e-5)
    # the last real token matters: changing it changes the reward, changing padding does not
    assert not torch.allclose(model.score(batch[:, :-1], mask[:, :-1])[1], rewards[1])


def test_bf16_mixed_fit_and_checkpoint(cpu_trainer, tok, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = RewardModel(
        gpt_config(tok),
        max_steps=2,
        margin=0.25,
        center_coef=0.05,
        optim=OptimConfig(lr=1e-3, warmup_steps=0, weight_decay=0.01, beta2=0.999),
    )
    t = cpu_trainer(max_steps=2, precision="bf16-mixed", enable_checkpointing=True)
    t.fit(model, loader(rankings(8, seed=4), tok, batch_size=4))
    assert t.precision == "bf16-mixed" and math.isfinite(t.callback_metrics["train/loss"].item())
    assert next(model.parameters()).dtype == torch.float32  # mixed: fp32 weights, bf16 compute

    ckpt = next((tmp_path / "checkpoints").glob("*.ckpt"))
    restored = RewardModel.load_from_checkpoint(ckpt)
    assert restored.hparams.margin == 0.25 and restored.hparams.center_coef == 0.05
    assert restored.model.config == gpt_config(tok)
    assert torch.equal(restored.head.linear.weight, model.head.linear.weight)


def test_soft_targets_stop_at_the_pairs_agreement() -> None:
    # target 0.6: the loss is least where sigmoid(r_c - r_r) = 0.6, d = log(0.6 / 0.4) = 0.405465, not at d -> inf
    d = torch.tensor([0.405465, 0.0, 3.0], requires_grad=True)
    targets = torch.full((3,), 0.6)
    pairwise_loss(d, torch.zeros(3), targets=targets).backward()
    grad = d.grad * 3  # per pair: sigmoid(d) - t
    assert grad[0].item() == pytest.approx(0.0, abs=1e-5)
    assert grad[1].item() == pytest.approx(0.5 - 0.6) and grad[2].item() == pytest.approx(0.952574 - 0.6, abs=1e-5)
    hard = pairwise_loss(torch.tensor([1.0]), torch.zeros(1), targets=torch.ones(1))
    assert hard.item() == pytest.approx(pairwise_loss(torch.tensor([1.0]), torch.zeros(1)).item())  # t = 1: plain BT


def test_a_rankings_texts_run_once_whatever_pairs_they_are_in(tok) -> None:
    """K ranked responses make K(K-1)/2 pairs: pair_rewards runs the backbone once per distinct text (here 4, not
    12), and their shared prompt once (one packed row: the prompt, then the 4 responses), with the same rewards and
    the same gradients as a forward per pair side."""
    torch.manual_seed(0)
    model = RewardModel(gpt_config(tok)).eval()  # eval: no dropout, so both ways are comparable exactly
    ranking = {**rankings(1, seed=3)[0], "responses": ["good film", "a film", "bad film on the mat", "bad"]}
    ranking["ranking"] = [0, 1, 2, 3]
    batch = next(iter(loader([ranking], tok, batch_size=6)))
    assert batch["chosen_ids"].size(0) == 6
    rows = []
    hook = model.model.transformer.wte.register_forward_hook(lambda _m, args, _out: rows.append(tuple(args[0].shape)))
    chosen, rejected = model.pair_rewards(batch)
    hook.remove()
    prompt = int((batch["chosen_labels"][0] == -100).long().cumprod(0).sum())  # tokens before the response
    ids, mask = (torch.cat([batch[f"chosen_{k}"], batch[f"rejected_{k}"]]) for k in ("ids", "mask"))
    texts = {tuple(row[: int(m.sum())].tolist()) for row, m in zip(ids, mask, strict=True)}
    assert len(texts) == 4 and rows == [(1, prompt + sum(len(text) - prompt for text in texts))]
    pairwise_loss(chosen, rejected).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    alone_c, alone_r = (
        model(batch["chosen_ids"], batch["chosen_mask"]),
        model(batch["rejected_ids"], batch["rejected_mask"]),
    )
    torch.testing.assert_close((chosen, rejected), (alone_c, alone_r), atol=1e-5, rtol=1e-5)
    pairwise_loss(alone_c, alone_r).backward()
    for name, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(grads[name], p.grad, atol=1e-5, rtol=1e-4)

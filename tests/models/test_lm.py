"""Tests of models.lm and models.heads: real Lightning fits of tiny GPTs on CPU.

They prove learning (loss falls, every parameter moves, an SFT model recites its response, a classifier
separates "good" from "bad"), the schedule, the token-weighted val loss, bf16-mixed, and exact resume from a
mid-training checkpoint with dropout on."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import lightning as L
import pytest
import torch

from alignops.config import OptimConfig
from alignops.data.loaders import (
    ClassificationDataset,
    PackedBlocks,
    SFTDataset,
    collate_right_pad,
    encode_corpus,
    pad_id,
    resumable_loader,
    special_id,
    unigram_baseline_loss,
)
from alignops.data.tokenizer import chat_template, load_tokenizer, train_tokenizer
from models.generation import GenerationConfig, generate
from models.gpt import GPT, GPTConfig
from models.heads import ClassificationHead, ScalarHead
from models.lm import ClassifierModule, LMModule
from models.optim import lr_multiplier

WORDS = "the a cat dog sat ran on under mat log good bad film book red blue sky apple was and".split()  # noqa: SIM905
SFT_PAIRS = [
    {"prompt": "sky?", "response": "blue sky."},
    {"prompt": "fruit?", "response": "an apple."},
    {"prompt": "pet?", "response": "a cat sat."},
    {"prompt": "read?", "response": "a red book."},
]


def corpus(n: int) -> list[str]:
    """Short sentences from a handful of patterns: easy to learn, so a loss drop shows in few steps."""
    subjects, verbs, places = ["the cat", "a dog", "the sky"], ["sat on", "ran under"], ["the mat.", "a log."]
    return [f"{subjects[i % 3]} {verbs[i % 2]} {places[(i // 6) % 2]}" for i in range(n)]


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory):
    texts = corpus(100) + [chat_template(**p) for p in SFT_PAIRS] * 10
    texts += [" ".join(WORDS[(i * k + k) % len(WORDS)] for k in range(1, 2 + i % 9)) for i in range(200)]
    info = train_tokenizer(texts, vocab_size=300, min_frequency=1, out_dir=tmp_path_factory.mktemp("tok"))
    return load_tokenizer(Path(info.path))


def gpt_config(tok, dropout: float = 0.0) -> GPTConfig:
    return GPTConfig(vocab_size=tok.get_vocab_size(), block_size=32, n_layer=2, n_head=2, n_embd=32, dropout=dropout)


class LossRecorder(L.Callback):
    """train/loss of every optimizer step, by global step (1-based)."""

    def __init__(self) -> None:
        self.losses: dict[int, float] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses[trainer.global_step] = outputs["loss"].item()


def test_warmup_cosine_schedule() -> None:
    lam = [lr_multiplier("cosine", s, warmup_steps=4, max_steps=20, min_lr_ratio=0.1) for s in range(25)]
    assert lam[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])  # linear warmup, peak at step warmup_steps
    assert all(a > b for a, b in zip(lam[4:20], lam[5:21], strict=True))  # then strictly decreasing
    assert lam[12] == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the cosine: half way down
    assert lam[20:] == pytest.approx([0.1] * 5)  # min_lr at max_steps, and after
    assert lr_multiplier("cosine", 0, warmup_steps=0, max_steps=10, min_lr_ratio=0.0) == 1.0
    with pytest.raises(ValueError, match="warmup_steps < max_steps"):
        LMModule(
            GPTConfig(n_layer=1, n_head=1, n_embd=8, vocab_size=16, block_size=8),
            max_steps=5,
            optim=OptimConfig(warmup_steps=5),
        )


def test_heads() -> None:
    torch.manual_seed(0)
    hidden = torch.randn(4, 7, 256)
    scalar = ScalarHead(256)
    assert scalar(hidden).shape == (4, 7) and scalar(hidden[:, -1]).shape == (4,)
    assert scalar.linear.weight.std().item() == pytest.approx(1 / math.sqrt(257), rel=0.2)
    head = ClassificationHead(256, num_classes=3, dropout=0.1).eval()
    assert head(hidden[:, -1]).shape == (4, 3)


def test_causal_lm_learns_and_schedules(cpu_trainer, tok, tmp_path: Path) -> None:
    ids = encode_corpus(corpus(240), tok)
    n_val = len(ids) // 10
    train, val = PackedBlocks(ids[n_val:], 32), PackedBlocks(ids[:n_val], 32)
    torch.manual_seed(0)
    steps = 80
    model = LMModule(gpt_config(tok), max_steps=steps, optim=OptimConfig(lr=3e-3, warmup_steps=8, min_lr_ratio=0.1))
    initial = copy.deepcopy(model.state_dict())
    recorder = LossRecorder()
    t = cpu_trainer(max_steps=steps, callbacks=[recorder])
    t.fit(model, resumable_loader(train, batch_size=8, seed=0))

    losses = list(recorder.losses.values())
    assert len(losses) == steps
    assert sum(losses[-5:]) / 5 < 0.7 * losses[0], losses
    for name, p in model.named_parameters():
        assert not torch.equal(p.detach(), initial[name]), f"{name} did not change"
    assert "train/tokens_per_sec" in t.callback_metrics and t.callback_metrics["train/tokens_per_sec"] > 0
    # the cosine ended at min_lr: the last step ran at lr(max_steps - 1), the optimizer now holds lr(max_steps)
    assert t.callback_metrics["train/lr"].item() == pytest.approx(
        3e-3 * lr_multiplier("cosine", steps - 1, 8, steps, 0.1)
    )
    assert t.optimizers[0].param_groups[0]["lr"] == pytest.approx(3e-3 * 0.1)
    assert t.optimizers[0].param_groups[1]["weight_decay"] == 0.0  # biases and LayerNorm gains do not decay

    metrics = t.validate(model, resumable_loader(val, batch_size=8, shuffle=False), verbose=False)[0]
    assert metrics["val/ppl"] == pytest.approx(math.exp(metrics["val/loss"]), rel=1e-4)
    baseline = unigram_baseline_loss(train.tokens, val.tokens, tok.get_vocab_size())
    assert metrics["val/loss"] < 0.5 * baseline  # far better than token frequencies alone


def test_loss_is_the_mean_cross_entropy_of_each_supervised_next_token() -> None:
    # position t predicts token t + 1; -100 (a prompt, padding) is no target; the last position predicts nothing
    torch.manual_seed(0)
    model = LMModule(
        GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=11),
        max_steps=10,
        optim=OptimConfig(warmup_steps=0),
    )
    ids = torch.randint(11, (2, 6))
    labels = ids.clone()
    labels[0, :3] = -100  # row 0: a 3-token prompt
    labels[1, 4:] = -100  # row 1: 2 tokens of padding
    with torch.no_grad():
        logits = model(ids).float()
        terms = [
            -logits[b, t].log_softmax(-1)[labels[b, t + 1]]
            for b in range(2)
            for t in range(5)
            if labels[b, t + 1] != -100
        ]
        loss, n = model.loss({"input_ids": ids, "labels": labels})
    assert n.item() == len(terms) == 3 + 3
    assert loss.item() == pytest.approx(torch.stack(terms).mean().item(), rel=1e-6)


def test_val_loss_is_token_weighted(cpu_trainer, tok, tmp_path: Path) -> None:
    # two batches with very different numbers of supervised tokens: the mean of batch means would be wrong
    records = [{"prompt": "sky?", "response": "a"}, {"prompt": "pet?", "response": "the cat sat on the mat log."}]
    ds = SFTDataset(records, tok, max_len=32)
    collate = collate_right_pad(pad_id(tok))
    torch.manual_seed(0)
    model = LMModule(gpt_config(tok), max_steps=10, optim=OptimConfig(warmup_steps=0))
    metrics = cpu_trainer().validate(
        model, resumable_loader(ds, batch_size=1, shuffle=False, collate_fn=collate), verbose=False
    )[0]
    total, tokens = 0.0, 0
    model.eval()
    with torch.no_grad():
        for i in range(2):
            loss, n = model.loss(collate([ds[i]]))
            total, tokens = total + loss.item() * n.item(), tokens + n.item()
    assert metrics["val/loss"] == pytest.approx(total / tokens, rel=1e-5)
    assert metrics["val/ppl"] == pytest.approx(math.exp(total / tokens), rel=1e-4)


def test_sft_recites_a_trained_response(cpu_trainer, tok, tmp_path: Path) -> None:
    torch.manual_seed(0)
    base = GPT(gpt_config(tok))  # stands in for the pretrained base: SFT starts from its weights
    model = LMModule.from_base(base, max_steps=120, optim=OptimConfig(lr=3e-3, warmup_steps=5))
    assert torch.equal(model.model.transformer.wte.weight, base.transformer.wte.weight)
    ds = SFTDataset(SFT_PAIRS, tok, max_len=32)
    assert ds.truncated == 0
    loader = resumable_loader(ds, batch_size=4, seed=0, collate_fn=collate_right_pad(pad_id(tok)))
    cpu_trainer(max_steps=120).fit(model, loader)

    gpt = model.model.eval()
    eos = special_id(tok, "<|endoftext|>")
    for pair in SFT_PAIRS:
        prompt = torch.tensor([tok.encode(chat_template(pair["prompt"])).ids])
        config = GenerationConfig(max_new_tokens=12, eos_token_id=eos, pad_token_id=pad_id(tok))
        sequences, lengths = generate(gpt, prompt, config=config)
        new = sequences[0, prompt.size(1) : prompt.size(1) + int(lengths[0])].tolist()
        assert tok.decode(new, skip_special_tokens=False) == pair["response"] + "<|endoftext|>"


def sentiment_records(n: int, seed: int) -> list[dict]:
    """Random filler words around "good" (positive) or "bad" (negative), at a random place."""
    g = torch.Generator().manual_seed(seed)
    filler = [w for w in WORDS if w not in ("good", "bad")]
    records = []
    for i in range(n):
        words = [
            filler[j] for j in torch.randint(len(filler), (int(torch.randint(3, 8, (1,), generator=g)),), generator=g)
        ]
        words.insert(int(torch.randint(len(words) + 1, (1,), generator=g)), "good" if i % 2 else "bad")
        records.append({"text": " ".join(words), "label": "positive" if i % 2 else "negative"})
    return records


def test_sequence_classifier_learns_and_reports(cpu_trainer, tok, tmp_path: Path) -> None:
    labels = ["negative", "positive"]
    collate = collate_right_pad(pad_id(tok))
    train = ClassificationDataset(sentiment_records(96, seed=1), tok, max_len=24, labels=labels)
    val = ClassificationDataset(sentiment_records(40, seed=2), tok, max_len=24, labels=labels)
    torch.manual_seed(0)
    backbone = GPT(gpt_config(tok))
    model = ClassifierModule.from_base(
        backbone,
        labels=labels,
        max_steps=90,
        optim=OptimConfig(lr=3e-3, warmup_steps=5, weight_decay=0.01, beta2=0.999),
    )
    assert torch.equal(model.model.transformer.h[0].attn.c_attn.weight, backbone.transformer.h[0].attn.c_attn.weight)
    t = cpu_trainer(max_steps=90)
    t.fit(model, resumable_loader(train, batch_size=16, seed=0, collate_fn=collate))

    val_loader = resumable_loader(val, batch_size=16, shuffle=False, collate_fn=collate)
    metrics = t.validate(model, val_loader, verbose=False)[0]
    expected = {f"val/{m}" for m in ("loss", "accuracy", "precision", "recall", "f1", "f1_negative", "f1_positive")}
    assert set(metrics) == expected
    # chance is 0.5. One example moves accuracy by 0.025, and 90 steps amplify any bitwise change: the math attention
    # kernel of CPU training (models.base.attention_kernel) ended this run at 36 of 40, macro-F1 0.8997
    assert metrics["val/accuracy"] >= 0.85 and metrics["val/f1"] >= 0.85, metrics
    assert model.confusion_matrix["val"].shape == (2, 2)
    assert model.confusion_matrix["val"].sum().item() == len(val)
    test_metrics = t.test(model, val_loader, verbose=False)[0]
    assert set(test_metrics) == {k.replace("val/", "test/") for k in expected}
    assert test_metrics["test/accuracy"] == pytest.approx(metrics["val/accuracy"])
    assert torch.equal(model.confusion_matrix["test"], model.confusion_matrix["val"])


def test_exact_resume_from_mid_training_checkpoint(cpu_trainer, tok, tmp_path: Path) -> None:
    # 12 blocks in batches of 4: 3 steps an epoch, so 8 steps cross two epoch boundaries; dropout 0.1 draws
    # random masks every step, the loader reshuffles every epoch, and validation runs at every epoch end
    ids = encode_corpus(corpus(200), tok)
    data, val = PackedBlocks(ids[: 12 * 31 + 1], 32), PackedBlocks(ids[-(4 * 31 + 1) :], 32)
    assert len(data) == 12

    def run(name: str, ckpt_path: Path | None, seed: int) -> dict[int, float]:
        torch.manual_seed(seed)
        model = LMModule(gpt_config(tok, dropout=0.1), max_steps=8, optim=OptimConfig(lr=1e-3, warmup_steps=2))
        recorder = LossRecorder()
        checkpoints = L.pytorch.callbacks.ModelCheckpoint(
            dirpath=tmp_path / name, filename="{step}", every_n_train_steps=2, save_top_k=-1
        )
        t = cpu_trainer(max_steps=8, enable_checkpointing=True, callbacks=[recorder, checkpoints])
        train_loader = resumable_loader(data, batch_size=4, seed=3)
        t.fit(model, train_loader, resumable_loader(val, batch_size=4, shuffle=False), ckpt_path=ckpt_path)
        return recorder.losses

    full = run("full", None, seed=0)
    assert sorted(full) == list(range(1, 9))
    for step in (4, 6):  # mid-epoch, and at the end of an epoch
        # a different seed: the resumed run must get its dropout masks from the checkpoint, not from chance
        resumed = run(f"from-{step}", tmp_path / "full" / f"step={step}.ckpt", seed=123)
        assert sorted(resumed) == list(range(step + 1, 9))
        got, want = torch.tensor([resumed[s] for s in resumed]), torch.tensor([full[s] for s in resumed])
        assert torch.allclose(got, want, atol=1e-6, rtol=0), (step, got, want)

    checkpoint = torch.load(tmp_path / "full" / "step=4.ckpt", weights_only=True)
    assert set(checkpoint["rng_states"]) >= {"torch", "python"}
    loader_states = checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader_states == [dict(epoch=1, batches_done=1, batch_size=4, num_examples=12, seed=3, world_size=1)]
    restored = LMModule.load_from_checkpoint(tmp_path / "full" / "step=4.ckpt")
    assert restored.model.config == gpt_config(tok, dropout=0.1)


def test_bf16_mixed_fit_on_cpu(cpu_trainer, tok, tmp_path: Path) -> None:
    ids = encode_corpus(corpus(40), tok)
    torch.manual_seed(0)
    model = LMModule(gpt_config(tok), max_steps=2, optim=OptimConfig(lr=1e-3, warmup_steps=0))
    recorder = LossRecorder()
    t = cpu_trainer(max_steps=2, precision="bf16-mixed", callbacks=[recorder])
    t.fit(model, resumable_loader(PackedBlocks(ids, 32), batch_size=4, seed=0))
    assert t.precision == "bf16-mixed"
    assert len(recorder.losses) == 2 and all(math.isfinite(v) for v in recorder.losses.values())
    assert next(model.parameters()).dtype == torch.float32  # mixed: fp32 weights, bf16 compute


def test_compiled_model_trains_like_eager(cpu_trainer, tok, tmp_path: Path) -> None:
    # torch.compile on CPU builds C++ kernels: about 20 s cold (8 s cached), the price of knowing compile works
    ids = encode_corpus(corpus(40), tok)
    losses = []
    for compile in (False, True):
        torch.manual_seed(0)
        model = LMModule(gpt_config(tok), max_steps=2, compile=compile, optim=OptimConfig(lr=1e-3, warmup_steps=0))
        recorder = LossRecorder()
        cpu_trainer(max_steps=2, callbacks=[recorder]).fit(
            model, resumable_loader(PackedBlocks(ids, 32), batch_size=4, seed=0)
        )
        losses.append(list(recorder.losses.values()))
        assert all(
            name.startswith("model.transformer.") or name.startswith("model.lm_head.") for name in model.state_dict()
        )
    assert torch.allclose(torch.tensor(losses[1]), torch.tensor(losses[0]), atol=1e-4), losses

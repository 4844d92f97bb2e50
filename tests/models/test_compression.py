"""Tests of models.compression and models.distill: int8 quantization against fp32, its plain-tensor storage,
magnitude pruning's exact counts, the distillation loss against hand-computed numbers, the student's start from
its teacher, and a real Lightning distillation on CPU whose loss and KL to the teacher fall."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from alignops.config import OptimConfig
from models.compression import (
    count_parameters,
    from_int8_state,
    int8_state,
    is_quantized,
    prunable,
    prune_magnitude,
    quantize_int8,
    weight_bytes,
)
from models.distill import DistillModel, distill_loss, init_from_teacher
from models.generation import GenerationConfig, generate
from models.gpt import GPT, GPTConfig

CONFIG = GPTConfig(vocab_size=64, block_size=32, n_layer=4, n_head=2, n_embd=64)


def model(seed: int = 0, config: GPTConfig = CONFIG) -> GPT:
    torch.manual_seed(seed)
    return GPT(config).eval()


def tokens(batch: int = 4, length: int = 24, seed: int = 1) -> torch.Tensor:
    return torch.randint(CONFIG.vocab_size, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_int8_logits_are_close_to_fp32() -> None:
    gpt = model()
    with torch.no_grad():  # sharper than the init's near-uniform outputs, as a trained model is
        gpt.transformer.wte.weight.mul_(20)
    q = quantize_int8(gpt)
    assert is_quantized(q) and not is_quantized(gpt)
    ids = tokens()
    with torch.no_grad():
        exact, approx = gpt(ids), q(ids)
    # Tolerance: int8 weights per output channel keep the logits within 2% (relative Frobenius norm) and the
    # next-token distributions within 1e-3 nats of KL; measured here ~0.5% and ~1e-5.
    assert ((approx - exact).norm() / exact.norm()).item() < 0.02
    kl = F.kl_div(approx.log_softmax(-1), exact.log_softmax(-1), log_target=True, reduction="none").sum(-1)
    assert kl.mean().item() < 1e-3
    assert (approx.argmax(-1) == exact.argmax(-1)).float().mean() > 0.95
    assert gpt.lm_head.weight is gpt.transformer.wte.weight  # the original is left alone


def test_int8_state_is_plain_tensors_and_round_trips_exactly(tmp_path: Path) -> None:
    q = quantize_int8(model())
    state = int8_state(q)
    weight = state["transformer.h.0.mlp.c_fc.weight"]
    assert weight.dtype == torch.int8 and weight.shape == (4 * CONFIG.n_embd, CONFIG.n_embd)
    assert state["transformer.h.0.mlp.c_fc.weight_scale"].shape == (4 * CONFIG.n_embd,)
    assert state["transformer.wte.weight"].dtype == torch.float32  # embeddings stay fp32
    assert not any(t.is_quantized for t in state.values())
    save_file(state, str(tmp_path / "w.safetensors"))  # safetensors refuses quantized dtypes and tuples
    restored = from_int8_state(CONFIG, load_file(str(tmp_path / "w.safetensors")))
    ids = tokens()
    with torch.no_grad():
        assert torch.equal(restored(ids), q(ids))

    wrong = dict(state)
    wrong["transformer.h.0.attn.c_attn.weight"] = wrong["transformer.h.0.attn.c_attn.weight"][:, :10]
    with pytest.raises(ValueError, match="transformer.h.0.attn.c_attn.weight has shape"):
        from_int8_state(CONFIG, wrong)
    with pytest.raises(ValueError, match="already int8"):
        quantize_int8(q)


def test_int8_model_generates_with_the_kv_cache() -> None:
    q = quantize_int8(model())
    prompt = tokens(batch=2, length=5)
    sequences, lengths = generate(q, prompt, None, GenerationConfig(max_new_tokens=6))
    assert sequences.shape == (2, 11) and lengths.tolist() == [6, 6]
    # the cached decode equals a full forward's argmax at every step
    with torch.no_grad():
        full = q(sequences[:, :-1]).argmax(-1)[:, 4:]
    assert torch.equal(full, sequences[:, 5:])


def test_counts_and_bytes() -> None:
    gpt = model()
    q = quantize_int8(gpt)
    total = sum(p.numel() for p in gpt.parameters())  # parameters() lists the tied matrix once
    assert count_parameters(gpt)[0] == total
    assert count_parameters(q)[0] == total  # the int8 copy of lm_head is the tied matrix: not counted again
    block_params = sum(w.numel() for w in prunable(gpt).values())
    # fp32: 4 bytes a weight; int8: the block matrices and lm_head one byte each, wte still fp32
    assert weight_bytes(gpt) == 4 * total
    saved = 3 * block_params - CONFIG.vocab_size * CONFIG.n_embd  # 3 bytes saved per block weight, lm_head added
    assert weight_bytes(q) == 4 * total - saved


@pytest.mark.parametrize("sparsity", [0.5, 0.3])
def test_pruning_hits_the_target_exactly_in_every_matrix(sparsity: float) -> None:
    gpt = model()
    before = {k: v.clone() for k, v in gpt.state_dict().items()}
    pruned, shares = prune_magnitude(gpt, sparsity)
    assert set(shares) == set(prunable(gpt)) and len(shares) == 4 * CONFIG.n_layer
    for name, weight in prunable(pruned).items():
        k = round(sparsity * weight.numel())
        assert int((weight == 0).sum()) == k, name
        assert shares[name] == k / weight.numel()
        original = before[name]
        cut, kept = original[weight == 0].abs(), original[weight != 0].abs()
        assert cut.max() <= kept.min()  # the smallest magnitudes went
        assert torch.equal(weight[weight != 0], original[weight != 0])
    untouched = [k for k in before if k not in shares]
    assert all(torch.equal(pruned.state_dict()[k], before[k]) for k in untouched)  # embeddings, biases, norms
    assert all(torch.equal(gpt.state_dict()[k], before[k]) for k in before)  # a copy: the original is intact
    total, nonzero = count_parameters(pruned)
    zeros = sum(round(sparsity * w.numel()) for w in prunable(gpt).values())
    assert nonzero == count_parameters(gpt)[1] - zeros
    sequences, _ = generate(pruned, tokens(batch=1, length=4), None, GenerationConfig(max_new_tokens=5))
    assert sequences.shape == (1, 9)


def test_distill_loss_against_hand_computed_values() -> None:
    student = torch.tensor([[[1.0, 0.0, -1.0], [0.5, 0.5, 0.0], [0.0, 0.0, 0.0]]])  # (1, 3, 3)
    teacher = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [9.0, 9.0, 9.0]]])
    labels = torch.tensor([[-100, 2, 1]])  # position 0 predicts labels[1] = 2, position 1 predicts 1
    mask = torch.tensor([[1, 1, 1]])
    T, alpha = 2.0, 0.25
    loss, stats = distill_loss(student, teacher, labels, mask, T, alpha)

    def kl(p_logits, q_logits):
        p, q = torch.softmax(p_logits / T, -1), torch.softmax(q_logits / T, -1)
        return float((p * (p.log() - q.log())).sum())

    expected_kl = (kl(teacher[0, 0], student[0, 0]) + kl(teacher[0, 1], student[0, 1])) / 2
    ce = lambda logits, target: -float(torch.log_softmax(logits, -1)[target])  # noqa: E731
    expected_lm = (ce(student[0, 0], 2) + ce(student[0, 1], 1)) / 2
    assert stats["kl"].item() == pytest.approx(expected_kl, rel=1e-5)
    assert stats["lm"].item() == pytest.approx(expected_lm, rel=1e-5)
    assert loss.item() == pytest.approx(alpha * T**2 * expected_kl + (1 - alpha) * expected_lm, rel=1e-5)
    assert (stats["n_kl"].item(), stats["n_lm"].item()) == (2, 2)

    # padding is not distilled: only position 0 is followed by a real token
    _, padded = distill_loss(student, teacher, torch.tensor([[-100, 2, -100]]), torch.tensor([[1, 1, 0]]), T, alpha)
    assert padded["kl"].item() == pytest.approx(kl(teacher[0, 0], student[0, 0]), rel=1e-5)
    same, s = distill_loss(teacher, teacher, labels, mask, T, 1.0)
    assert s["kl"].item() == pytest.approx(0.0, abs=1e-6) and same.item() == pytest.approx(0.0, abs=1e-6)


def test_student_starts_from_evenly_spaced_teacher_blocks() -> None:
    teacher = model(seed=3)
    for layers, expected in ((2, [0, 3]), (3, [0, 2, 3]), (1, [0])):
        student = GPT(GPTConfig(**{**CONFIG.__dict__, "n_layer": layers}))
        assert init_from_teacher(student, teacher) == expected
        for i, j in enumerate(expected):
            s, t = student.transformer.h[i].state_dict(), teacher.transformer.h[j].state_dict()
            assert all(torch.equal(s[k], t[k]) for k in s)
        assert torch.equal(student.transformer.wte.weight, teacher.transformer.wte.weight)
        assert student.lm_head.weight is student.transformer.wte.weight  # the tie survives the copy
    with pytest.raises(ValueError, match="width"):
        init_from_teacher(GPT(GPTConfig(**{**CONFIG.__dict__, "n_embd": 32})), teacher)


def teacher_data(teacher: GPT, n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Sequences the teacher samples itself: data and soft targets agree, so both losses can fall together."""
    prompt = torch.randint(CONFIG.vocab_size, (n, 2), generator=torch.Generator().manual_seed(seed))
    config = GenerationConfig(max_new_tokens=14, do_sample=True, seed=seed)
    sequences, _ = generate(teacher, prompt, None, config)
    return [dict(input_ids=s, labels=s, attention_mask=torch.ones_like(s)) for s in sequences]


def test_distillation_lowers_the_students_loss_and_kl(cpu_trainer) -> None:
    teacher = model(seed=5)
    with torch.no_grad():
        teacher.transformer.wte.weight.mul_(30)  # a confident teacher, far from a random student
    student = GPTConfig(**{**CONFIG.__dict__, "n_layer": 1, "n_embd": 32})  # narrower: starts from random weights
    kd = DistillModel.from_teacher(
        teacher, student, temperature=2.0, alpha=0.7, max_steps=60, optim=OptimConfig(lr=3e-3, warmup_steps=2)
    )
    assert kd.model.num_params() < teacher.num_params()
    teacher_before = {k: v.clone() for k, v in kd.teacher.state_dict().items()}
    student_before = {k: v.clone() for k, v in kd.model.state_dict().items()}
    train = DataLoader(teacher_data(teacher, 64, seed=0), batch_size=16, shuffle=True)
    val = DataLoader(teacher_data(teacher, 32, seed=1), batch_size=16)

    trainer = cpu_trainer(max_steps=60, num_sanity_val_steps=0)
    start = trainer.validate(kd, val, verbose=False)[0]
    trainer.fit(kd, train, val)
    end = trainer.validate(kd, val, verbose=False)[0]

    assert end["val/kl"] < 0.7 * start["val/kl"], (start, end)
    assert end["val/loss"] < start["val/loss"], (start, end)
    assert math.isclose(end["val/ppl"], math.exp(end["val/loss"]), rel_tol=1e-5)
    assert all(torch.equal(v, teacher_before[k]) for k, v in kd.teacher.state_dict().items())  # frozen
    changed = [k for k, v in kd.model.state_dict().items() if not torch.equal(v, student_before[k])]
    assert sorted(changed) == sorted(student_before), "every student parameter learns"

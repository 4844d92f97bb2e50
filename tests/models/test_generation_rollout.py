"""Rollout decoding (models.generation, greedy and sampling): the same tokens as the per-step loop it replaced,
no host read of a device value per token, and the early exit once every row has ended. The oracle samples with
generation.draw, as the loop does; draw's distribution is tested on its own (tests/models/test_sampling.py)."""

from __future__ import annotations

import pytest
import torch

from models import generation
from models.generation import EXIT_CHECK_EVERY, GenerationConfig, apply_repetition_penalty, generate
from tests.models.test_generation import tiny_gpt


@torch.no_grad()
def per_step_loop(model, input_ids, attention_mask, config):
    """The decoding loop as it was before the rollout rewrite, kept verbatim as the oracle: it grows the
    sequences with torch.cat and reads finished.all() on the host after every token."""
    B, T = input_ids.shape
    generator = torch.Generator().manual_seed(config.seed) if config.seed is not None else None
    cache = model.new_cache(B, T + config.max_new_tokens)
    logits = generation._last_logits(model, input_ids, attention_mask, cache)
    seqs, mask = input_ids, attention_mask
    finished = torch.zeros(B, dtype=torch.bool)
    lengths = torch.zeros(B, dtype=torch.long)
    for step in range(config.max_new_tokens):
        if config.repetition_penalty != 1.0:
            logits = apply_repetition_penalty(logits, seqs, config.repetition_penalty, mask)
        if config.do_sample:
            logits = logits / config.temperature
            if config.top_k is not None:
                logits = generation.top_k_filter(logits, config.top_k)
            if config.top_p is not None:
                logits = generation.top_p_filter(logits, config.top_p)
            next_ids, _ = generation.draw(logits.softmax(dim=-1), generator)
        else:
            next_ids = logits.argmax(dim=-1)
        next_ids = next_ids.masked_fill(finished, config.pad_token_id)
        lengths += (~finished).long()
        seqs = torch.cat([seqs, next_ids[:, None]], dim=1)
        mask = torch.cat([mask, (~finished)[:, None].to(mask.dtype)], dim=1)
        if config.eos_token_id is not None:
            finished |= next_ids == config.eos_token_id
        if finished.all() or step == config.max_new_tokens - 1:
            break
        logits = generation._last_logits(model, next_ids[:, None], mask, cache)
    return seqs, lengths


def batch(rows: int = 6, width: int = 7, seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompts of 1..width real tokens."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 64, (rows, width), generator=g)
    real = torch.randint(1, width + 1, (rows,), generator=g)
    mask = (torch.arange(width)[None] >= width - real[:, None]).long()
    return ids * mask, mask


CONFIGS = {
    "greedy": dict(),
    "greedy, repetition penalty": dict(repetition_penalty=1.3),
    "sampled, seeded": dict(do_sample=True, seed=5),
    "sampled, top-p, temperature": dict(do_sample=True, top_p=0.9, temperature=0.7, seed=11),
    "sampled, top-k, penalty": dict(do_sample=True, top_k=5, repetition_penalty=1.2, seed=3),
}


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("eos", [None, 7, 21])
def test_same_tokens_as_the_per_step_loop(name, eos):
    model = tiny_gpt(seed=3)
    ids, mask = batch()
    config = GenerationConfig(max_new_tokens=20, eos_token_id=eos, pad_token_id=0, **CONFIGS[name])
    want, want_lengths = per_step_loop(model, ids, mask, config)
    got, got_lengths = generate(model, ids, mask, config)
    assert torch.equal(got, want) and torch.equal(got_lengths, want_lengths)


def test_the_oracle_cases_end_rows_at_different_steps():
    """The cases above are only a test of the early exit if some rows end before others, and some before the end."""
    model = tiny_gpt(seed=3)
    ids, mask = batch()
    seen = set()
    for eos in (7, 21):
        for options in CONFIGS.values():
            config = GenerationConfig(max_new_tokens=20, eos_token_id=eos, **options)
            seen.update(per_step_loop(model, ids, mask, config)[1].tolist())
    assert len(seen) > 3 and min(seen) < 20 and 20 in seen


class HostReads:
    """Counts every read of a tensor's value into Python (each one waits for the device on a GPU)."""

    NAMES = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "numpy", "cpu")

    def __init__(self, monkeypatch) -> None:
        self.count = 0
        for name in self.NAMES:
            original = getattr(torch.Tensor, name)

            def counted(tensor, *args, _original=original, **kwargs):
                self.count += 1
                return _original(tensor, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, counted)


@pytest.mark.parametrize("options", [dict(), dict(do_sample=True, top_p=0.9, seed=1, repetition_penalty=1.1)])
def test_no_host_read_per_token(monkeypatch, options):
    model = tiny_gpt(seed=3)
    ids, mask = batch()
    config = GenerationConfig(max_new_tokens=24, eos_token_id=63, **options)  # 63 is rare: rows run to the end
    reads = HostReads(monkeypatch)
    _, lengths = generate(model, ids, mask, config)
    monkeypatch.undo()
    assert lengths.max() == 24
    # one read per EXIT_CHECK_EVERY steps (the early-exit check) plus the final width, never one per token
    assert reads.count <= 24 // EXIT_CHECK_EVERY + 1, reads.count


def test_the_counter_sees_a_per_token_read(monkeypatch):
    """The counter above is not blind: the old loop's per-token finished.all() check shows up in it."""
    model = tiny_gpt(seed=3)
    ids, mask = batch()
    reads = HostReads(monkeypatch)
    per_step_loop(model, ids, mask, GenerationConfig(max_new_tokens=24, eos_token_id=63))
    monkeypatch.undo()
    assert reads.count >= 24


def test_stops_soon_after_every_row_has_ended(monkeypatch):
    model = tiny_gpt(seed=3)
    ids, mask = batch(rows=3)  # three rows that all reach the EOS found below
    # an EOS every row reaches, the last of them after the first check and by the second
    config = lambda eos: GenerationConfig(max_new_tokens=24, eos_token_id=eos)  # noqa: E731
    ends = lambda eos: per_step_loop(model, ids, mask, config(eos))[1].max()  # noqa: E731
    eos = next(e for e in range(64) if EXIT_CHECK_EVERY < ends(e) <= 2 * EXIT_CHECK_EVERY)
    calls = []
    original = model.hidden_states
    monkeypatch.setattr(model, "hidden_states", lambda *a, **k: calls.append(1) or original(*a, **k))
    out, lengths = generate(model, ids, mask, config(eos))
    monkeypatch.undo()
    last = int(lengths.max())
    assert out.size(1) == ids.size(1) + last
    # the prefill, then one step per token until the first check after the last row's EOS (the step of that
    # check feeds nothing more): 2 * EXIT_CHECK_EVERY model calls, not 24
    assert len(calls) == 2 * EXIT_CHECK_EVERY < 24, (len(calls), last)


@pytest.mark.parametrize("eos", [None, 7])
def test_rows_of_a_larger_batch_sample_what_they_would_sample_in_it(eos):
    """Data-parallel rollouts: a batch split every-other-row between two ranks, each naming its rows' places in the
    whole batch (global_rows), samples the whole batch's tokens; without the names, the halves draw other tokens."""
    from dataclasses import replace

    model = tiny_gpt(seed=3)
    ids, mask = batch()
    config = GenerationConfig(max_new_tokens=20, eos_token_id=eos, do_sample=True, seed=5)
    whole, whole_lengths = generate(model, ids, mask, config)
    unnamed = []
    for rank in (0, 1):
        rows = list(range(rank, ids.size(0), 2))
        part, lengths = generate(
            model, ids[rows], mask[rows], replace(config, global_rows=tuple(rows), global_batch_size=6)
        )
        assert torch.equal(lengths, whole_lengths[rows])
        assert torch.equal(part, whole[rows, : part.size(1)])  # cut at this half's longest row
        unnamed.append(torch.equal(generate(model, ids[rows], mask[rows], config)[0], part))
    assert not all(unnamed)
    with pytest.raises(ValueError, match="global_rows and global_batch_size go together"):
        GenerationConfig(global_rows=(0, 1))
    with pytest.raises(ValueError, match="global_rows must lie in"):
        GenerationConfig(global_rows=(0, 6), global_batch_size=6)

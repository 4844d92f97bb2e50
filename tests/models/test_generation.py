"""Tests of models.generation: logits processors by hand, and decoding against full forward passes."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from models.generation import (
    GenerationConfig,
    apply_repetition_penalty,
    generate,
    suppress_token,
    top_k_filter,
    top_p_filter,
)
from models.gpt import GPT, GPTConfig

INF = float("-inf")


def tiny_gpt(seed: int = 0, vocab_size: int = 64, std: float = 0.5) -> GPT:
    """A random model whose weight matrices are redrawn far wider than GPT-2's init (std 0.02): freshly
    initialized, a tied model mostly repeats its last token with near-tied logits, too weak a test of decoding."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=16)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, std)
    return model


def prompts() -> tuple[torch.Tensor, torch.Tensor]:
    """Two left-padded prompts: row 0 has 3 real tokens, row 1 has 6."""
    torch.manual_seed(1)
    ids = torch.randint(1, 64, (2, 6))
    mask = torch.ones_like(ids)
    ids[0, :3], mask[0, :3] = 0, 0
    return ids, mask


def sequence_logprobs(model: GPT, prompt: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Sum of log p(new tokens | prompt) under a full forward pass; prompt (T,), new (N, L) -> (N,)."""
    seqs = torch.cat([prompt.expand(len(new), -1), new], dim=1)  # (N, T + L)
    logprobs = model(seqs[:, :-1]).log_softmax(-1)[:, len(prompt) - 1 :]  # (N, L, V)
    return logprobs.gather(2, new[..., None]).sum(dim=(1, 2))


# ---- logits processors ----------------------------------------------------------------------------------


def test_repetition_penalty_by_hand() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    seen = torch.tensor([[0, 1, 0, 2]])
    out = apply_repetition_penalty(logits, seen, 2.0)
    torch.testing.assert_close(out, torch.tensor([[1.0, -2.0, 0.25, 3.0]]))
    # masked positions (padding) do not count: token 2 is only seen as padding here
    out = apply_repetition_penalty(logits, seen, 2.0, token_mask=torch.tensor([[1, 1, 1, 0]]))
    torch.testing.assert_close(out, torch.tensor([[1.0, -2.0, 0.5, 3.0]]))


def test_top_k_filter_by_hand() -> None:
    logits = torch.tensor([[1.0, 4.0, 2.0, 3.0], [0.0, -1.0, 5.0, 1.0]])
    out = top_k_filter(logits, 2)
    torch.testing.assert_close(out, torch.tensor([[INF, 4.0, INF, 3.0], [INF, INF, 5.0, 1.0]]))
    torch.testing.assert_close(top_k_filter(logits, 10), logits)


def test_top_p_keeps_smallest_set_reaching_p() -> None:
    probs = torch.tensor([[0.15, 0.5, 0.05, 0.3]])  # sorted: 0.5, 0.3, 0.15, 0.05
    logits = probs.log()
    kept = lambda p: top_p_filter(logits, p).isfinite()[0].tolist()  # noqa: E731
    assert kept(0.3) == [False, True, False, False]  # 0.5 alone reaches 0.3
    assert kept(0.75) == [False, True, False, True]  # 0.5 + 0.3
    assert kept(0.9) == [True, True, False, True]  # 0.5 + 0.3 + 0.15
    assert kept(1.0) == [True, True, True, True]
    assert kept(1e-9) == [False, True, False, False]  # never empty


# ---- decoding ---------------------------------------------------------------------------------------------


def test_greedy_is_argmax_of_full_forward() -> None:
    model = tiny_gpt()
    ids = torch.randint(0, 64, (2, 5))
    seqs, lengths = generate(model, ids, config=GenerationConfig(max_new_tokens=6))
    assert seqs.shape == (2, 11) and lengths.tolist() == [6, 6]
    assert torch.equal(seqs[:, :5], ids)
    for t in range(5, 11):
        assert torch.equal(seqs[:, t], model(seqs[:, :t])[:, -1].argmax(-1))


def test_top_k_1_and_tiny_temperature_equal_greedy() -> None:
    model = tiny_gpt()
    ids, mask = prompts()
    greedy, _ = generate(model, ids, mask, GenerationConfig(max_new_tokens=8))
    top1, _ = generate(model, ids, mask, GenerationConfig(max_new_tokens=8, do_sample=True, top_k=1, seed=3))
    cold, _ = generate(model, ids, mask, GenerationConfig(max_new_tokens=8, do_sample=True, temperature=1e-5))
    assert torch.equal(top1, greedy)
    assert torch.equal(cold, greedy)


def test_sampling_seeded_by_its_own_generator() -> None:
    model = tiny_gpt()
    ids, mask = prompts()
    sample = lambda seed: generate(  # noqa: E731
        model, ids, mask, GenerationConfig(max_new_tokens=10, do_sample=True, top_p=0.95, seed=seed)
    )[0]
    first = sample(0)
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(sample(0), first)
    assert not torch.equal(sample(1), first)


def test_repetition_penalty_changes_greedy_only_when_on() -> None:
    model = tiny_gpt()
    ids = torch.randint(0, 64, (1, 4))
    plain, _ = generate(model, ids, config=GenerationConfig(max_new_tokens=12))
    same, _ = generate(model, ids, config=GenerationConfig(max_new_tokens=12, repetition_penalty=1.0))
    strong, _ = generate(model, ids, config=GenerationConfig(max_new_tokens=12, repetition_penalty=1e6))
    assert torch.equal(plain, same)
    new = strong[0, 4:].tolist()
    assert len(set(plain[0, 4:].tolist())) < 12  # without the penalty this model repeats itself
    assert len(set(new)) == len(new)  # a huge penalty forbids repeats (some unseen token has a logit > 0)
    assert not set(new) & set(ids[0].tolist())


def test_batched_left_padded_equals_per_row() -> None:
    model = tiny_gpt()
    ids, mask = prompts()
    for config in (GenerationConfig(max_new_tokens=7), GenerationConfig(max_new_tokens=7, num_beams=3)):
        batched, lengths = generate(model, ids, mask, config)
        for row in range(2):
            real = ids[row][mask[row].bool()][None]
            alone, alone_len = generate(model, real, config=config)
            assert torch.equal(batched[row, 6:], alone[0, real.size(1) :]), config
            assert lengths[row] == alone_len[0]


def test_eos_stops_a_row_and_pads_after() -> None:
    model = tiny_gpt()
    ids, mask = prompts()
    free, _ = generate(model, ids, mask, GenerationConfig(max_new_tokens=8))
    eos = free[0, 6 + 2].item()  # row 0's third new token
    assert eos not in free[1, 6:].tolist(), "pick another seed: row 1 should not hit this EOS"
    out, lengths = generate(model, ids, mask, GenerationConfig(max_new_tokens=8, eos_token_id=eos, pad_token_id=63))
    first_eos = free[0, 6:].tolist().index(eos)
    assert lengths.tolist() == [first_eos + 1, 8]
    assert torch.equal(out[0, 6 : 6 + first_eos + 1], free[0, 6 : 6 + first_eos + 1])
    assert (out[0, 6 + first_eos + 1 :] == 63).all()
    assert torch.equal(out[1], free[1])


def test_min_new_tokens_suppresses_eos_until_then() -> None:
    """EOS cannot be drawn before min_new_tokens (greedy and sampled, and in beam search); min_new_tokens =
    max_new_tokens is a fixed length: no row ends early, and the rest of the distribution is the model's."""
    model = tiny_gpt()
    ids, mask = prompts()
    free, _ = generate(model, ids, mask, GenerationConfig(max_new_tokens=8))
    eos = free[0, 6 + 2].item()  # greedy row 0 would end at its third new token
    for sample in (False, True):
        config = GenerationConfig(max_new_tokens=8, min_new_tokens=8, do_sample=sample, eos_token_id=eos, seed=3)
        out, lengths = generate(model, ids, mask, config)
        assert lengths.tolist() == [8, 8] and eos not in out[:, 6:].tolist()[0] + out[:, 6:].tolist()[1]
    out, lengths = generate(model, ids, mask, GenerationConfig(max_new_tokens=8, min_new_tokens=4, eos_token_id=eos))
    assert eos not in out[0, 6:10].tolist() and out[0, 6:8].tolist() == free[0, 6:8].tolist()
    beams, _ = generate(model, ids, mask, GenerationConfig(max_new_tokens=8, min_new_tokens=8, num_beams=2,
                                                           eos_token_id=eos))  # fmt: skip
    assert eos not in beams[:, 6:].flatten().tolist()
    logits = torch.randn(2, 64)
    probs = suppress_token(logits, eos).softmax(-1)
    assert bool((probs[:, eos] == 0).all())
    torch.testing.assert_close(
        probs, logits.softmax(-1).index_fill(1, torch.tensor([eos]), 0.0) / (1 - logits.softmax(-1)[:, eos : eos + 1])
    )
    assert not suppress_token(logits, eos).log_softmax(-1).isinf().any()  # p log p stays 0, not NaN


def test_all_rows_finished_stops_early() -> None:
    model = tiny_gpt()
    ids = torch.randint(0, 64, (1, 4))
    free, _ = generate(model, ids, config=GenerationConfig(max_new_tokens=8))
    eos = free[0, 4].item()
    out, lengths = generate(model, ids, config=GenerationConfig(max_new_tokens=8, eos_token_id=eos))
    assert out.shape == (1, 5) and lengths.tolist() == [1]


def test_one_beam_equals_greedy() -> None:
    # num_beams=1 dispatches to greedy; run the beam code itself with one beam through its private entry point
    from models.generation import _beam_search

    model = tiny_gpt()
    ids, mask = prompts()
    free, _ = generate(model, ids, mask, GenerationConfig(max_new_tokens=8))
    for eos in (None, free[0, 6 + 3].item()):
        config = GenerationConfig(max_new_tokens=8, eos_token_id=eos)
        greedy, greedy_len = generate(model, ids, mask, config)
        beam, beam_len = _beam_search(model, ids, mask, config)
        assert torch.equal(beam[:, : greedy.size(1)], greedy) and torch.equal(beam_len, greedy_len)


def test_beam_search_finds_the_best_sequence() -> None:
    """With vocabulary 4, 3 new tokens and 16 beams, beam search keeps every 2-token prefix, so it must find the
    exact best of all 64 continuations; greedy must not beat it, and on some seeds it is myopic and loses."""
    greedy_lost = 0
    for seed in range(8):
        model = tiny_gpt(seed, vocab_size=4, std=0.05)  # soft distributions: room for greedy to be myopic
        prompt = torch.tensor([1, 2, 3])
        continuations = torch.tensor(list(itertools.product(range(4), repeat=3)))  # (64, 3)
        best = sequence_logprobs(model, prompt, continuations).max().item()
        beam, _ = generate(model, prompt[None], config=GenerationConfig(max_new_tokens=3, num_beams=16))
        greedy, _ = generate(model, prompt[None], config=GenerationConfig(max_new_tokens=3))
        beam_score, greedy_score = sequence_logprobs(model, prompt, torch.cat([beam, greedy])[:, 3:]).tolist()
        assert math.isclose(beam_score, best, abs_tol=1e-4)
        assert beam_score >= greedy_score - 1e-5
        greedy_lost += beam_score > greedy_score + 1e-3
    assert greedy_lost >= 1


def reference_beam_search(model: GPT, prompt: list[int], config: GenerationConfig) -> list[int]:
    """Textbook beam search on full forward passes, no cache, one prompt: what _beam_search must compute."""
    K, eos, lp = config.num_beams, config.eos_token_id, config.length_penalty
    live, finished = [(0.0, [])], []  # live: (sum of log-probs, new tokens); finished: (normalized score, tokens)
    for _ in range(config.max_new_tokens):
        candidates = []
        for score, new in live:
            logprobs = model(torch.tensor([prompt + new]))[0, -1].log_softmax(-1).tolist()
            candidates += [(score + logprob, [*new, token]) for token, logprob in enumerate(logprobs)]
        candidates.sort(key=lambda c: c[0], reverse=True)
        live = []
        for rank, (score, new) in enumerate(candidates[: 2 * K]):
            if new[-1] == eos:
                if rank < K:
                    finished.append((score / len(new) ** lp, new))
            elif len(live) < K:
                live.append((score, new))
        if len(finished) >= K:  # early stopping
            return max(finished)[1]
    return max(finished + [(score / len(new) ** lp, new) for score, new in live])[1]


def test_beam_search_matches_reference() -> None:
    model = tiny_gpt()
    ids, mask = prompts()
    free, _ = generate(model, ids, mask, GenerationConfig(max_new_tokens=6, num_beams=3))
    eos = free[0, 6 + 1].item()
    for eos_id, lp in ((None, 1.0), (eos, 1.0), (eos, 3.0), (eos, -1.0)):
        config = GenerationConfig(
            max_new_tokens=6, num_beams=3, eos_token_id=eos_id, length_penalty=lp, pad_token_id=63
        )
        out, lengths = generate(model, ids, mask, config)
        for row in range(2):
            expected = reference_beam_search(model, ids[row][mask[row].bool()].tolist(), config)
            assert out[row, 6 : 6 + lengths[row]].tolist() == expected, (eos_id, lp, row)


def test_beam_search_eos_and_length_penalty() -> None:
    model = tiny_gpt()
    ids, mask = prompts()
    free, _ = generate(model, ids, mask, GenerationConfig(max_new_tokens=8, num_beams=4))
    eos = free[0, 6].item()
    config = GenerationConfig(max_new_tokens=8, num_beams=4, eos_token_id=eos, pad_token_id=63)
    out, lengths = generate(model, ids, mask, config)
    assert (lengths < 8).any()
    for row in range(2):
        new, n = out[row, 6:].tolist(), lengths[row].item()
        assert all(t == 63 for t in new[n:])
        assert eos not in new[: n - 1]  # an EOS only ever ends a hypothesis
        assert n == 8 or new[n - 1] == eos

    # scores are sum_logprob / len**length_penalty (< 0): a negative penalty favors short hypotheses, a
    # positive one long ones (given early_stopping=False, so the search goes on to find them)
    lengths_for = lambda lp: generate(  # noqa: E731
        model, ids, mask, GenerationConfig(**{**vars(config), "length_penalty": lp, "early_stopping": False})
    )[1]
    short, long = lengths_for(-3.0), lengths_for(3.0)
    assert (short <= long).all() and (short < long).any()


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="do_sample"):
        GenerationConfig(num_beams=2, do_sample=True)
    with pytest.raises(ValueError, match="top_p"):
        GenerationConfig(top_p=0.0)
    with pytest.raises(ValueError, match="min_new_tokens"):
        GenerationConfig(max_new_tokens=4, min_new_tokens=5)
    with pytest.raises(ValueError, match="pad_token_id"):
        generate(
            tiny_gpt(), torch.zeros(1, 3, dtype=torch.long), config=GenerationConfig(max_new_tokens=3, pad_token_id=64)
        )
    with pytest.raises(ValueError, match="block_size"):
        generate(tiny_gpt(), torch.zeros(1, 30, dtype=torch.long), config=GenerationConfig(max_new_tokens=3))

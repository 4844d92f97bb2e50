"""Evaluation scores sampled responses with the reward model exactly as PPO scores them in training
(models.ppo.module.PPOModule._score): the sampled ids, EOS only where the policy produced it, a pad id sampled
mid-response kept. Decoding and re-encoding the text, as evaluation did before, appends an EOS to a response that
ran to max_new_tokens and drops a sampled pad id, so its scores were not the ones PPO optimised."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from alignops.artifacts import LoadedModel, ModelMeta
from alignops.data.loaders import EOS, pad_id
from alignops.data.tokenizer import chat_template, load_tokenizer, train_tokenizer
from alignops.evaluation.scoring import Responses, head_outputs, reward_scores, text_reward_scores
from models.gpt import GPT, GPTConfig
from models.heads import ScalarHead, last_token
from models.ppo.module import PPOModule
from models.ppo.rollout import response_mask

PROMPTS = ["Write a review.", "Say something kind about the weather today."]
TEXTS = ["the film was good and the cast was great", "a grey sky and a cold wind", "sunny and warm"]


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    texts = [chat_template(p, t) for p in PROMPTS for t in TEXTS] * 5
    info = train_tokenizer(texts, vocab_size=300, min_frequency=1, out_dir=tmp_path_factory.mktemp("tok"))
    tok = load_tokenizer(Path(info.path))
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=tok.get_vocab_size(), block_size=64, n_layer=2, n_head=2, n_embd=32))
    head = ScalarHead(gpt.hidden_size)
    torch.nn.init.normal_(head.linear.weight, std=1.0)  # scores far apart: a wrong token shows
    return LoadedModel(gpt.eval(), tok, ModelMeta(kind="reward", stage="reward"), head.eval())


def rollout(tok) -> tuple[Responses, torch.Tensor, torch.Tensor]:
    """Three sampled responses of N tokens as evaluation holds them, and the same as PPO holds them: prompts
    left-padded to P, responses right-padded after their EOS, full_mask over both."""
    eos, pad = tok.token_to_id(EOS), pad_id(tok)
    prompts = [e.ids for e in tok.encode_batch([chat_template(p) for p in (PROMPTS[0], PROMPTS[1], PROMPTS[0])])]
    body = [e.ids for e in tok.encode_batch(TEXTS)]
    N = 8
    responses = [
        body[0][:N],  # ran to max_new_tokens: no EOS
        body[1][:3] + [eos],  # ended
        body[2][:2] + [pad] + body[0][: N - 3],  # a pad id sampled mid-response, no EOS
    ]
    assert len(responses[0]) == len(responses[2]) == N and eos not in responses[0] + responses[2]
    texts = [tok.decode([t for t in r if t not in (eos, pad)]) for r in responses]
    ended = [bool(r) and r[-1] == eos for r in responses]
    P = max(len(p) for p in prompts)
    sequences = torch.full((3, P + N), pad)
    prompt_mask = torch.zeros(3, P, dtype=torch.long)
    for row, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        sequences[row, P - len(p) : P] = torch.tensor(p)
        prompt_mask[row, P - len(p) :] = 1
        sequences[row, P : P + len(r)] = torch.tensor(r)
    full_mask = torch.cat([prompt_mask, response_mask(sequences[:, P:], eos)], dim=1)
    return Responses(texts, prompts, responses, ended), sequences, full_mask


def test_evaluation_scores_the_ids_ppo_scores(reward_model: LoadedModel) -> None:
    out, sequences, full_mask = rollout(reward_model.tokenizer)

    @torch.no_grad()
    def scorer(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # models.reward.RewardModel.forward
        hidden = reward_model.gpt.hidden_states(ids, attention_mask=mask)
        return reward_model.head(last_token(hidden, mask))

    trained_on = PPOModule._score(SimpleNamespace(reward=scorer), sequences, full_mask)  # PPO's own layout

    scored = reward_scores(reward_model, out, batch_size=2)
    assert scored == pytest.approx(trained_on.tolist(), abs=1e-5)

    # what evaluation did before: decode, then re-encode chat_template(prompt, text), which ends in EOS
    tok = reward_model.tokenizer
    prompts = [PROMPTS[0], PROMPTS[1], PROMPTS[0]]
    rows = [e.ids for e in tok.encode_batch([chat_template(p, t) for p, t in zip(prompts, out.texts, strict=True)])]
    before = head_outputs(reward_model.gpt, reward_model.head, rows, pad_id(tok), batch_size=2).tolist()
    assert before[1] == pytest.approx(trained_on[1].item(), abs=1e-5)  # the response that ended: the same ids
    assert abs(before[0] - trained_on[0].item()) > 1e-3  # ran out: an EOS appended that PPO never scored
    assert abs(before[2] - trained_on[2].item()) > 1e-3  # and the sampled pad id lost


def test_texts_are_scored_as_ranked_pairs_are_trained(reward_model: LoadedModel) -> None:
    """text_reward_scores (held-out rankings): prompt and response tokenized apart with EOS, as PairDataset does;
    ended=False leaves the EOS out, so the scores equal those of the sampled ids."""
    from alignops.data.preferences import Pair, PairDataset

    tok = reward_model.tokenizer
    pairs = [Pair(PROMPTS[0], TEXTS[0], TEXTS[1], "test", 1.0)]
    example = PairDataset(pairs, tok, max_len=64)[0]
    expected = head_outputs(reward_model.gpt, reward_model.head, [example["chosen_ids"].tolist()], pad_id(tok), 1)
    scored = text_reward_scores(reward_model, [PROMPTS[0]], [TEXTS[0]], batch_size=1)
    assert scored == pytest.approx(expected.tolist(), abs=1e-5)

    out, _, _ = rollout(tok)
    unended = text_reward_scores(reward_model, PROMPTS[:1], out.texts[:1], batch_size=1, ended=[False])
    assert unended == pytest.approx(reward_scores(reward_model, out, batch_size=2)[:1], abs=1e-5)


def test_length_batches_group_similar_lengths_under_a_token_budget() -> None:
    from alignops.evaluation.scoring import length_batches

    lengths = [5, 300, 6, 40, 300, 7]
    # longest first; a batch stops at batch_size rows or when rows x its longest would pass max_tokens
    assert length_batches(lengths, batch_size=3, max_tokens=600) == [[1, 4], [3, 5, 2], [0]]
    assert length_batches(lengths, batch_size=8, max_tokens=100) == [[1], [4], [3, 5], [2, 0]]
    assert length_batches([900], batch_size=4, max_tokens=100) == [[0]]  # a row longer than the budget goes alone
    assert sorted(i for b in length_batches(lengths, 2, 10**6) for i in b) == list(range(len(lengths)))


def test_scores_do_not_depend_on_how_rows_are_batched(monkeypatch) -> None:
    """Rows of very different lengths, scored in one batch, in length batches or one by one: the same figures, in
    the callers' order (padding is masked, results are put back where their rows were)."""
    from alignops.evaluation import scoring

    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=50, block_size=64, n_layer=1, n_head=2, n_embd=16)).eval()
    head = torch.nn.Linear(16, 1)
    rows = [[3, 4, 5], list(range(1, 41)), [6, 7], list(range(2, 30))]
    responses = Responses([""] * 4, rows, [[8, 9], [10], [11, 12, 13], [14, 15]], [False] * 4)
    examples = [  # SFT examples: the loss on the labelled (response) tokens only
        {"input_ids": torch.tensor(r), "labels": torch.tensor([-100] * (len(r) - 2) + r[-2:])} for r in rows
    ]
    figures = []
    for budget in (10**6, 64, 1):  # one batch of 4; [40+1], [28+2, 5], [3+3]; every row alone
        # the budget is a module constant the scorers read, not a parameter of theirs: set it for this test only
        monkeypatch.setattr(scoring, "MAX_BATCH_TOKENS", budget)
        figures.append((
            head_outputs(gpt, head, rows, 0, batch_size=4).squeeze(-1).tolist(),
            scoring.response_nll(gpt, responses, 0, batch_size=4),
            scoring.sequence_kl(gpt, gpt, responses, 0, batch_size=4),
            list(scoring.response_loss(gpt, examples, 0, batch_size=4)),
        ))  # fmt: skip
    for got in figures[1:]:
        for a, b in zip(got, figures[0], strict=True):
            assert a == pytest.approx(b, rel=1e-5, abs=1e-6)
    assert len(set(figures[0][1])) == 4  # the four rows' figures differ: a mix-up would show


def test_sampled_responses_carry_their_temperature_and_fixed_length(reward_model: LoadedModel) -> None:
    """generate_responses samples at the temperature asked (a near-zero one is greedy), records it for the KL and
    NLL that score the responses, and with fixed_length draws no EOS, below temperature 1 too."""
    from alignops.evaluation.scoring import generate_responses

    gpt, tok = reward_model.gpt, reward_model.tokenizer
    greedy = generate_responses(gpt, tok, PROMPTS, 6, batch_size=2, sample=False)
    cold = generate_responses(gpt, tok, PROMPTS, 6, batch_size=2, sample=True, temperature=1e-4)
    assert cold.response_ids == greedy.response_ids and (cold.temperature, greedy.temperature) == (1e-4, 1.0)
    fixed = generate_responses(gpt, tok, PROMPTS * 4, 6, 4, sample=True, seed=3, fixed_length=True, temperature=0.7)
    eos = tok.token_to_id(EOS)
    assert fixed.temperature == 0.7 and fixed.lengths == [6] * 8 and fixed.suppressed == eos
    assert not any(eos in r for r in fixed.response_ids)

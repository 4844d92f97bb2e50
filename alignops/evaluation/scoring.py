"""Model passes over the evaluation sets, batched and without gradient: language-modelling loss, response loss,
classifier predictions, generation with lengths and EOS, KL to a reference, reward-model scores.

    loss, tokens = lm_loss(gpt, ids, batch_size=16)                       # token-weighted, nats/token
    out = generate_responses(gpt, tok, prompts, max_new_tokens=48, batch_size=16, sample=True, seed=0)
    out.texts, out.lengths, out.eos                                       # one per prompt
    kls = sequence_kl(policy, reference, out, pad_id=pad, batch_size=16)  # nats per response
    scores = reward_scores(reward_model, out, batch_size=16)              # the sampled ids, as PPO scores them
    scores = text_reward_scores(reward_model, prompts, texts, batch_size=16)   # texts, as ranked pairs train it

Models are alignops.artifacts.LoadedModel (gpt, tokenizer, head) or a bare model: any models.base.CausalLM (the
project's GPT or a Hugging Face causal LM) with its tokenizer (a tokenizers.Tokenizer, a transformers tokenizer,
or their alignops.chat.ChatTokenizer); everything runs on the model's device and returns plain Python numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from alignops.chat import chat_tokenizer
from alignops.data.loaders import IGNORE_INDEX, PackedBlocks, collate_left_pad, collate_right_pad, pair_window
from models.base import CausalLM
from models.generation import GenerationConfig, generate, suppress_token
from models.heads import last_token


def _device(gpt: CausalLM) -> torch.device:
    return next(gpt.parameters()).device


MAX_BATCH_TOKENS = 4096  # padded tokens in one forward: one 1,500-token prompt among 15 short ones made a batch of
# 16 x 1,500 (the smollm2 evaluate stage spent 6 of its 8 minutes on padding); a batch is cut at this many instead


def length_batches(lengths: Sequence[int], batch_size: int, max_tokens: int | None = None) -> list[list[int]]:
    """Row indices in batches of similar length: longest first, at most batch_size rows and, past the first row,
    at most max_tokens (default MAX_BATCH_TOKENS) padded tokens (rows x the batch's longest) each. Depends on the
    lengths alone, so two models given the same rows batch them alike (generate_responses seeds each batch)."""
    max_tokens = MAX_BATCH_TOKENS if max_tokens is None else max_tokens
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):  # stable: ties keep their order
        batch = batches[-1] if batches else None
        if batch and len(batch) < batch_size and (len(batch) + 1) * lengths[batch[0]] <= max_tokens:
            batch.append(i)
        else:
            batches.append([i])
    return batches


def corpus_ids(tokenizer, texts: Sequence[str]) -> Tensor:
    """All texts as one 1-D LongTensor, each text's ids followed by the tokenizer's EOS (the document separator):
    alignops.data.loaders.encode_corpus for any tokenizer (a tokenizers.Tokenizer, a transformers one)."""
    tok = chat_tokenizer(tokenizer)
    return torch.tensor([t for ids in tok.encode_batch(list(texts)) for t in [*ids, tok.eos_id]], dtype=torch.long)


LM_BLOCK_CAP = 1024  # a real base's whole context (8192 for SmolLM2) made one block's logits and attention about
# 24 GB on a CPU (the smollm2 evaluate stage was OOM-killed); the held-out documents are far shorter anyway


def lm_block(model: CausalLM) -> int:
    """The block length language modelling is scored in: the model's context, at most LM_BLOCK_CAP."""
    return min(model.max_positions, LM_BLOCK_CAP)


def scored_blocks(token_ids: Tensor, block_size: int, max_tokens: int | None = None) -> Tensor:
    """The blocks (K, T) lm_loss scores: the stream cut into context-long blocks, every next-token pair once;
    max_tokens keeps about that many, in blocks spread evenly over the stream. The n-gram baselines score the
    very same blocks (alignops.evaluation.baselines)."""
    block = min(block_size, len(token_ids))  # a stream shorter than the context is one block
    if block < 2:
        raise ValueError("no tokens to score: the held-out corpus is empty")
    blocks = PackedBlocks(token_ids, block)
    chosen = list(range(len(blocks)))
    if max_tokens is not None and max_tokens // (block - 1) < len(blocks):
        keep = max(1, max_tokens // (block - 1))
        chosen = [int(i * len(blocks) / keep) for i in range(keep)]
    return torch.stack([blocks[i]["input_ids"] for i in chosen])


@torch.inference_mode()
def lm_loss(gpt: CausalLM, token_ids: Tensor, batch_size: int, max_tokens: int | None = None) -> tuple[float, int]:
    """(mean next-token cross-entropy, number of predicted tokens) over a 1-D token stream cut into blocks of the
    model's context (lm_block), every next-token pair counted once as in pretraining's validation. max_tokens:
    score only about that many, in blocks spread evenly over the stream (the corpus is ordered by source)."""
    rows = scored_blocks(token_ids, lm_block(gpt), max_tokens)
    total, n = 0.0, 0
    for start in range(0, len(rows), batch_size):
        ids = rows[start : start + batch_size].to(_device(gpt))
        logits = gpt(ids)  # (B, T, V)
        total += float(F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten(), reduction="sum"))
        n += ids[:, 1:].numel()
    return total / n, n


@torch.inference_mode()
def response_loss(gpt: CausalLM, examples: Sequence[dict[str, Tensor]], pad: int, batch_size: int) -> tuple[float, int]:
    """(mean cross-entropy of the labelled tokens, their number) over SFT examples (alignops.data.loaders.SFTDataset
    items: input_ids, labels with -100 on the prompt)."""
    collate = collate_right_pad(pad)
    total, n = 0.0, 0
    for rows in length_batches([len(e["input_ids"]) for e in examples], batch_size):
        batch = collate([examples[i] for i in rows])
        ids, mask = batch["input_ids"].to(_device(gpt)), batch["attention_mask"].to(_device(gpt))
        targets = batch["labels"][:, 1:].to(ids.device)
        logits = gpt(ids, attention_mask=mask)[:, :-1]
        total += float(
            F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
        )
        n += int((targets != IGNORE_INDEX).sum())
    if n == 0:
        raise ValueError("no response tokens to score")
    return total / n, n


def _right_padded(rows: list[list[int]], pad: int, device: torch.device) -> tuple[Tensor, Tensor]:
    batch = collate_right_pad(pad)([{"input_ids": torch.tensor(r, dtype=torch.long)} for r in rows])
    return batch["input_ids"].to(device), batch["attention_mask"].to(device)


@torch.inference_mode()
def head_outputs(gpt: CausalLM, head: torch.nn.Module, rows: list[list[int]], pad: int, batch_size: int) -> Tensor:
    """The head (class logits or a scalar reward) on each token row's last real token: (N, ...) on the CPU."""
    head.eval()
    out: list[Tensor | None] = [None] * len(rows)
    for batch in length_batches([len(r) for r in rows], batch_size):
        ids, mask = _right_padded([rows[i] for i in batch], pad, _device(gpt))
        hidden = gpt.hidden_states(ids, attention_mask=mask)  # (B, T, C)
        for i, value in zip(batch, head(last_token(hidden, mask)).float().cpu(), strict=True):
            out[i] = value
    return torch.stack(out)


def classify(model, texts: Sequence[str], labels: Sequence[str], max_len: int, batch_size: int) -> list[str]:
    """A classifier model's label for each text, reading its first max_len tokens (as it was trained)."""
    tok = chat_tokenizer(model.tokenizer)
    rows = [ids[:max_len] or [tok.pad_id] for ids in tok.encode_batch(list(texts))]
    logits = head_outputs(model.gpt, model.head, rows, tok.pad_id, batch_size)
    return [labels[i] for i in logits.argmax(dim=-1).tolist()]


def reward_scores(model, responses: Responses, batch_size: int) -> list[float]:
    """A reward model's score of each sampled response exactly as PPO scores it in training
    (models.ppo.module.PPOModule._score): the sampled token ids themselves, prompt then response, EOS only where
    the policy produced it, a token sampled mid-response (a pad id too) kept; a long one keeps its end. Decoding
    and re-encoding would change both: the text loses the EOS and pad ids and may tokenize differently. The
    reward model must read the policy's tokenizer (PPO refuses any other; text_reward_scores does not need it)."""
    block = model.gpt.max_positions
    rows = [(p + r)[-block:] for p, r in zip(responses.prompt_ids, responses.response_ids, strict=True)]
    return head_outputs(model.gpt, model.head, rows, chat_tokenizer(model.tokenizer).pad_id, batch_size).tolist()


def text_reward_scores(
    model, prompts: Sequence[str], responses: Sequence[str], batch_size: int, ended: Sequence[bool] | None = None
) -> list[float]:
    """A reward model's score of (prompt, response) texts, tokenized as its ranked pairs were in training
    (alignops.data.preferences.PairDataset): the prompt in the chat template and the response apart, EOS after
    each response that ended (ended[i]; default all, as a ranked response has), cut by pair_window."""
    tok = chat_tokenizer(model.tokenizer)
    ended = [True] * len(responses) if ended is None else list(ended)
    prompt_ids = tok.encode_batch([tok.chat(p) for p in prompts])
    response_ids = [ids + [tok.eos_id] * e for ids, e in zip(tok.encode_batch(list(responses)), ended, strict=True)]
    rows = [pair_window(p, r, model.gpt.max_positions)[0] for p, r in zip(prompt_ids, response_ids, strict=True)]
    return head_outputs(model.gpt, model.head, rows, tok.pad_id, batch_size).tolist()


@dataclass(frozen=True)
class Responses:
    """One generated response per prompt."""

    texts: list[str]  # decoded, EOS and padding removed
    prompt_ids: list[list[int]]  # the prompt tokens the model saw (chat template, long prompts keep their end)
    response_ids: list[list[int]]  # the new tokens, up to and including EOS when the model produced one
    eos: list[bool]  # ended with EOS rather than at max_new_tokens
    suppressed: int | None = None  # a token id generation could not draw (fixed length: EOS), nor can scoring
    temperature: float = 1.0  # sampled from logits / temperature; sequence_kl and response_nll score that too

    @property
    def lengths(self) -> list[int]:
        return [len(r) for r in self.response_ids]


@torch.inference_mode()
def generate_responses(
    gpt: CausalLM,
    tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int,
    sample: bool,
    seed: int = 0,
    chat: bool = True,
    fixed_length: bool = False,
    temperature: float = 1.0,
) -> Responses:
    """Complete each prompt: greedy, or sampled at `temperature` with a seed per batch (length_batches; batch b uses
    seed + b), so two models given the same prompts in the same order draw from the same random streams.
    fixed_length: EOS is suppressed, every response is max_new_tokens long (the distribution is the model's without
    EOS, renormalised). sequence_kl and response_nll read the responses from the distribution they were drawn
    from: temperature and suppression included."""
    tok = chat_tokenizer(tokenizer)
    eos, pad = tok.eos_id, tok.pad_id
    room = gpt.max_positions - max_new_tokens
    if room < 1:
        raise ValueError(
            f"evaluate.max_new_tokens={max_new_tokens} leaves no room for a prompt in the model's "
            f"{gpt.max_positions}-token context: lower it."
        )
    texts = [tok.chat(p) if chat else p for p in prompts]
    prompt_ids = [ids[-room:] for ids in tok.encode_batch(texts)]
    collate = collate_left_pad(pad)
    response_ids: list[list[int]] = [[] for _ in prompt_ids]
    for b, rows in enumerate(length_batches([len(p) + max_new_tokens for p in prompt_ids], batch_size)):
        batch = collate([{"input_ids": torch.tensor(prompt_ids[i])} for i in rows])
        ids, mask = batch["input_ids"].to(_device(gpt)), batch["attention_mask"].to(_device(gpt))
        config = GenerationConfig(
            max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens if fixed_length else 0,
            do_sample=sample, temperature=temperature, eos_token_id=eos, pad_token_id=pad, seed=seed + b,
        )  # fmt: skip
        sequences, lengths = generate(gpt, ids, mask, config)
        width = ids.size(1)
        for row, (i, n) in enumerate(zip(rows, lengths.tolist(), strict=True)):
            response_ids[i] = sequences[row, width : width + n].tolist()
    ended = [bool(r) and r[-1] == eos for r in response_ids]
    decoded = [tok.decode(r) for r in response_ids]  # EOS and padding (special tokens) left out
    suppressed = eos if fixed_length else None
    return Responses(decoded, prompt_ids, response_ids, ended, suppressed, temperature if sample else 1.0)


def _response_logits(model: CausalLM, ids: Tensor, mask: Tensor, predicts: Tensor, responses: Responses) -> Tensor:
    """float32 logits (n, V) at the positions `predicts` (B, T) marks, in row-major order: the LM head runs on those
    alone, not on every position (a 49k vocabulary over a whole prompt is most of the memory and time). The
    distribution the responses were drawn from: divided by their temperature, their suppressed token impossible
    (in that order, as generation does: finfo.min / T < 1 would be -inf)."""
    hidden = model.hidden_states(ids, attention_mask=mask)  # (B, T, C)
    logits = model.lm_head(hidden[predicts.to(hidden.device)]).float() / responses.temperature
    return logits if responses.suppressed is None else suppress_token(logits, responses.suppressed)


def _prompt_response_batches(responses: Responses, batch_size: int) -> list[list[int]]:
    lengths = [len(p) + len(r) for p, r in zip(responses.prompt_ids, responses.response_ids, strict=True)]
    return length_batches(lengths, batch_size)


def _prompt_response_batch(responses: Responses, batch: list[int], pad: int, device) -> tuple:
    """(ids, mask, predicts, rows) of the prompt + response rows `batch` (indices), right-padded; predicts (B, T)
    marks the positions that predict a response token (position t predicts token t + 1), rows (n,) their row."""
    prompts = [responses.prompt_ids[i] for i in batch]
    answers = [responses.response_ids[i] for i in batch]
    ids, mask = _right_padded([p + r for p, r in zip(prompts, answers, strict=True)], pad, device)
    predicts = torch.zeros_like(mask, dtype=torch.bool)
    for row, (p, r) in enumerate(zip(prompts, answers, strict=True)):
        predicts[row, len(p) - 1 : len(p) - 1 + len(r)] = True
    return ids, mask, predicts, predicts.nonzero()[:, 0]


@torch.inference_mode()
def sequence_kl(policy: CausalLM, reference: CausalLM, responses: Responses, pad: int, batch_size: int) -> list[float]:
    """KL(policy || reference) of each response in nats: the exact KL between the two next-token distributions,
    summed over the response's positions. With sampled responses its mean estimates the sequence-level KL, with
    less variance than log-ratios of the sampled tokens (what PPO's ppo/kl logs)."""
    out = [0.0] * len(responses.response_ids)
    for batch in _prompt_response_batches(responses, batch_size):
        ids, mask, predicts, rows = _prompt_response_batch(responses, batch, pad, _device(policy))
        logp = F.log_softmax(_response_logits(policy, ids, mask, predicts, responses), dim=-1)  # (n, V)
        on = _device(reference)  # an int8 model runs on the CPU, its fp32 reference may not
        logq = _response_logits(reference, ids.to(on), mask.to(on), predicts, responses)
        logq = F.log_softmax(logq, dim=-1).to(logp.device)
        kl = (logp.exp() * (logp - logq)).sum(dim=-1)  # (n,)
        per_row = torch.zeros(ids.size(0), device=kl.device).index_add_(0, rows.to(kl.device), kl).tolist()
        for i, value in zip(batch, per_row, strict=True):
            out[i] = value
    return out


@torch.inference_mode()
def response_nll(model: CausalLM, responses: Responses, pad: int, batch_size: int) -> list[float]:
    """Each response's summed negative log-likelihood under `model`, nats (prompt tokens are context, not scored):
    with the response lengths, the model's perplexity of what another model wrote (the reference perplexity of a
    policy's continuations: fluent text stays likely under the model it started from)."""
    out = [0.0] * len(responses.response_ids)
    for batch in _prompt_response_batches(responses, batch_size):
        ids, mask, predicts, rows = _prompt_response_batch(responses, batch, pad, _device(model))
        logp = F.log_softmax(_response_logits(model, ids, mask, predicts, responses), dim=-1)  # (n, V)
        targets = ids[:, 1:][predicts[:, :-1]]  # the token each marked position predicts, in the same order
        token_logp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (n,)
        nll = torch.zeros(ids.size(0), device=logp.device).index_add_(0, rows.to(logp.device), -token_logp)
        for i, value in zip(batch, nll.tolist(), strict=True):
            out[i] = value
    return out

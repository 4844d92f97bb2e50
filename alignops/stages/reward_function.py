"""Reward functions for RL: a plain Python function named in config (`ppo.reward_function: module:function`), a
rule or a verifier, used in place of the reward model.

    fn = load_reward_function("alignops.stages.reward_function:vader_sentiment")
    scorer = TextScorer(fn, tokenizer)             # (input_ids, attention_mask) -> (B,) scores, as a reward model
    scores = scorer(ids, mask)                     # decodes each row, splits prompt and response, calls fn

The function takes (prompts: list[str], responses: list[str]) and returns one float per response. The texts are
the chat template's parts (alignops.data.tokenizer.chat_template): the user's prompt, and the response up to its
end-of-text token, both decoded from the very token ids the policy sampled.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from alignops.config import ConfigError

RewardFunction = Callable[[Sequence[str], Sequence[str]], Sequence[float]]
USER, ASSISTANT, END = "<|user|>\n", "<|assistant|>\n", "<|endoftext|>"  # chat_template's markers


def load_reward_function(spec: str) -> RewardFunction:
    """The function a `module:function` spec names; a ConfigError saying what is missing when it cannot."""
    module_name, _, name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"ppo.reward_function {spec!r}: cannot import {module_name!r} ({exc}).") from exc
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ConfigError(f"ppo.reward_function {spec!r}: {module_name} has no function {name!r}.")
    return fn


def split_chat(text: str) -> tuple[str, str]:
    """(prompt, response) of a chat-template text; the response stops at the end-of-text token."""
    head, marker, response = text.partition(ASSISTANT)
    if not marker:
        raise ValueError(
            f"no {ASSISTANT!r} in the scored text {text[:80]!r}: the rollout prompts use the chat template"
        )
    return head.removeprefix(USER), response.split(END, 1)[0]


class TextScorer:
    """A reward function as PPOModule's scorer: decodes the real tokens of each row and scores prompt and response."""

    def __init__(self, fn: RewardFunction, tokenizer) -> None:
        self.fn, self.tokenizer = fn, tokenizer

    def __call__(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        rows = [ids[mask.bool()].tolist() for ids, mask in zip(input_ids, attention_mask, strict=True)]
        texts = self.tokenizer.decode_batch(rows, skip_special_tokens=False)
        prompts, responses = zip(*(split_chat(t) for t in texts), strict=True)
        scores = [float(s) for s in self.fn(list(prompts), list(responses))]
        if len(scores) != len(rows):
            raise ValueError(f"the reward function returned {len(scores)} scores for {len(rows)} responses")
        return torch.tensor(scores, device=input_ids.device)


def vader_sentiment(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
    """VADER's compound sentiment of each response, in [-1, 1]: the sentiment-continuation reward as a rule."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return [analyzer.polarity_scores(r)["compound"] for r in responses]

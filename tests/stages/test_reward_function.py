"""Tests of alignops.stages.reward_function: loading a module:function and scoring decoded chat texts."""

from __future__ import annotations

import pytest
import torch

from alignops.config import ConfigError, load_config
from alignops.data.tokenizer import chat_template
from alignops.stages.reward_function import TextScorer, load_reward_function, split_chat, vader_sentiment


def test_split_chat_returns_prompt_and_response_up_to_eos():
    assert split_chat(chat_template("Say hi", "hi there") + "junk") == ("Say hi", "hi there")
    with pytest.raises(ValueError, match="chat template"):
        split_chat("no template here")


def test_text_scorer_passes_prompts_and_responses_to_the_function():
    seen = {}

    def count_words(prompts, responses):
        seen["prompts"], seen["responses"] = prompts, responses
        return [len(r.split()) for r in responses]

    class Decoder:  # the tokenizers API the scorer uses: decode_batch of id lists
        texts = [chat_template("p one", "a b c"), chat_template("p two", "")]

        def decode_batch(self, rows, skip_special_tokens):
            assert not skip_special_tokens and [len(r) for r in rows] == [3, 2]  # the masked rows' real tokens
            return self.texts

    ids = torch.arange(8).view(2, 4)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    scores = TextScorer(count_words, Decoder())(ids, mask)
    assert scores.tolist() == [3.0, 0.0]
    assert seen == {"prompts": ["p one", "p two"], "responses": ["a b c", ""]}


def test_a_missing_function_is_a_config_error_and_the_config_takes_the_spec():
    with pytest.raises(ConfigError, match="has no function 'nope'"):
        load_reward_function("alignops.stages.reward_function:nope")
    with pytest.raises(ConfigError, match="cannot import"):
        load_reward_function("no_such_module_xyz:f")
    assert load_reward_function("alignops.stages.reward_function:vader_sentiment") is vader_sentiment
    with pytest.raises(ConfigError, match="reward_function"):
        load_config("tiny", ["ppo.reward_function=not a spec"])


def test_vader_sentiment_rule_ranks_positive_above_negative():
    good, bad = vader_sentiment(["x", "x"], ["What a wonderful, lovely day!", "This is awful and terrible."])
    assert good > 0.5 and bad < -0.5

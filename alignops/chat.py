"""Text <-> token ids for a base model: the project's BPE tokenizer or a Hugging Face tokenizer, one interface.

A `ChatTokenizer` knows how a prompt becomes a chat turn (the tokenizer's own chat template when it has one,
the project's `<|user|> ... <|assistant|>` template otherwise, said in the log), and which ids end a response
(EOS) and fill a batch (pad): both come from the tokenizer, never from a literal in a stage.

    tok = chat_tokenizer(loaded.tokenizer)       # tokenizers.Tokenizer or a transformers tokenizer
    ids = tok.encode_batch([tok.chat("What is the capital of France?")])
    text = tok.decode(new_ids)                   # special tokens (EOS, pad) left out
"""

from __future__ import annotations

import logging
from typing import Protocol

from alignops.data.tokenizer import chat_template

log = logging.getLogger(__name__)

PROJECT_TEMPLATE = "alignops"  # alignops.json's chat_template value when a base falls back to the project's
EOS_TOKEN, PAD_TOKEN = "<|endoftext|>", "<|pad|>"  # the project's tokenizer (alignops.config.SPECIAL_TOKENS)


class ChatTokenizer(Protocol):
    eos_id: int
    pad_id: int

    def chat(self, prompt: str, response: str | None = None) -> str:
        """The prompt as a user turn, ready for the assistant's answer; with a response, the whole exchange."""

    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...

    def decode(self, ids: list[int]) -> str: ...


class ProjectTokenizer:
    """The byte-level BPE tokenizer alignops trains (alignops/data/tokenizer.py), with the project's template."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.eos_id = tokenizer.token_to_id(EOS_TOKEN)
        self.pad_id = tokenizer.token_to_id(PAD_TOKEN)

    def chat(self, prompt: str, response: str | None = None) -> str:
        return chat_template(prompt, response)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(texts)]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode([t for t in ids if t not in (self.eos_id, self.pad_id)])


class HFTokenizer:
    """A transformers tokenizer. Without a pad token, EOS pads (attention masks hide padding, so any real id
    does); without a chat template, the project's template is used. Both fallbacks are logged."""

    def __init__(self, tokenizer) -> None:
        if tokenizer.eos_token_id is None:
            raise ValueError(
                "the tokenizer has no EOS token, so no response could end: set eos_token in tokenizer_config.json"
            )
        self.tokenizer = tokenizer
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id
        if self.pad_id is None:
            log.info("the tokenizer has no pad token: padding with EOS (%s)", tokenizer.eos_token)
            self.pad_id = self.eos_id
        self.has_template = bool(getattr(tokenizer, "chat_template", None))
        if not self.has_template:
            log.info("the tokenizer has no chat template: using the project's <|user|>/<|assistant|> template")

    def chat(self, prompt: str, response: str | None = None) -> str:
        if not self.has_template:
            return chat_template(prompt, response).replace(EOS_TOKEN, self.tokenizer.eos_token)
        messages = [{"role": "user", "content": prompt}]
        if response is not None:
            messages.append({"role": "assistant", "content": response})
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=response is None)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        # the template's text already holds the special tokens it needs (BOS, role markers)
        return [self.tokenizer.encode(t, add_special_tokens=False) for t in texts]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def chat_tokenizer(tokenizer) -> ChatTokenizer:
    """The ChatTokenizer of a loaded model's tokenizer (artifacts.LoadedModel.tokenizer)."""
    from tokenizers import Tokenizer

    return ProjectTokenizer(tokenizer) if isinstance(tokenizer, Tokenizer) else HFTokenizer(tokenizer)

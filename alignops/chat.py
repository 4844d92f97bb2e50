"""Text <-> token ids for a base model: the project's BPE tokenizer or a Hugging Face tokenizer, one interface.

A `ChatTokenizer` knows how a prompt becomes a chat turn (the tokenizer's own chat template when it has one,
the project's `<|user|> ... <|assistant|>` template otherwise, said in the log), and which ids end a response
(EOS) and fill a batch (pad): both come from the tokenizer, never from a literal in a stage.

    tok = chat_tokenizer(loaded.tokenizer)       # tokenizers.Tokenizer or a transformers tokenizer
    ids = tok.encode_batch([tok.chat("What is the capital of France?")])
    text = tok.decode(new_ids)                   # special tokens (EOS, pad) left out

    example = response_labels(tok, "What is the capital of France?", "Paris.")   # SFT: the loss on "Paris."+EOS
    example = response_labels(tok, [{"role": "user", "content": ...}, ...], "Paris.")  # a conversation so far
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from alignops.data.tokenizer import chat_template
from alignops.data.tokenizer import decode as decode_text

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # a label cross-entropy skips (alignops.data.loaders.IGNORE_INDEX, torch's default)
PROJECT_TEMPLATE = "alignops"  # alignops.json's chat_template value when a base falls back to the project's
ASSISTANT_OPENING = chat_template("").partition("\n")[2]  # "<|assistant|>\n": the project's answer opening
EOS_TOKEN, PAD_TOKEN = "<|endoftext|>", "<|pad|>"  # the project's tokenizer (alignops.config.SPECIAL_TOKENS)


class ChatTokenizer(Protocol):
    eos_id: int
    pad_id: int

    def chat(self, prompt: str, response: str | None = None) -> str:
        """The prompt as a user turn, ready for the assistant's answer; with a response, the whole exchange."""

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        """A conversation (role/content dicts) as text; add_generation_prompt opens the assistant's turn."""

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

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        return project_render(messages, add_generation_prompt, EOS_TOKEN)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(texts)]

    def decode(self, ids: list[int]) -> str:
        return decode_text(self.tokenizer, [t for t in ids if t not in (self.eos_id, self.pad_id)])


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
        messages = [{"role": "user", "content": prompt}]
        if response is not None:
            messages.append({"role": "assistant", "content": response})
        return self.render(messages, add_generation_prompt=response is None)

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        if not self.has_template:
            return project_render(messages, add_generation_prompt, self.tokenizer.eos_token)
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        # the template's text already holds the special tokens it needs (BOS, role markers)
        return [self.tokenizer.encode(t, add_special_tokens=False) for t in texts]

    def decode(self, ids: list[int]) -> str:
        special = set(self.tokenizer.all_special_ids)
        return decode_text(self.tokenizer, [t for t in ids if t not in special])  # never a cut character


def chat_tokenizer(tokenizer) -> ChatTokenizer:
    """The ChatTokenizer of a loaded model's tokenizer (artifacts.LoadedModel.tokenizer); a ChatTokenizer as it is."""
    from tokenizers import Tokenizer

    if isinstance(tokenizer, ProjectTokenizer | HFTokenizer):
        return tokenizer
    return ProjectTokenizer(tokenizer) if isinstance(tokenizer, Tokenizer) else HFTokenizer(tokenizer)


def project_render(messages: list[dict[str, str]], add_generation_prompt: bool, eos: str) -> str:
    """The project's template over a conversation: `<|user|>\n...` and `<|assistant|>\n...<eos>` turns, the
    single-turn case being alignops.data.tokenizer.chat_template. It has no system role: a system message's text
    opens the next user turn, followed by a blank line."""
    text, system = "", ""
    for n, m in enumerate(messages):
        role, content = m.get("role"), m.get("content")
        if not isinstance(content, str):
            raise ValueError(f"message {n}: content must be a string, got {content!r}")
        if role == "system":
            system += content + "\n\n"
        elif role == "user":
            text += chat_template(system + content).removesuffix(ASSISTANT_OPENING)
            system = ""
        elif role == "assistant":
            text += f"{ASSISTANT_OPENING}{content}{eos}"
        else:
            raise ValueError(f"message {n}: role {role!r} is not one of system, user, assistant")
    return text + ASSISTANT_OPENING if add_generation_prompt else text


@dataclass(frozen=True)
class LabeledExample:
    """One training sequence: labels[i] is input_ids[i] where the loss counts, IGNORE_INDEX elsewhere."""

    input_ids: list[int]
    labels: list[int]

    @property
    def prompt_length(self) -> int:
        return next(i for i, label in enumerate(self.labels) if label != IGNORE_INDEX)


def response_labels(tok: ChatTokenizer, prompt: str | list[dict[str, str]], response: str) -> LabeledExample:
    """input_ids of the whole exchange in the base's own chat template; labels only on the assistant's response
    and the EOS that ends it (the template's prompt, any later text such as a trailing newline: IGNORE_INDEX).

    prompt: a user message, or the conversation so far (ending with the user's turn). The prompt's tokens are
    exactly what the model is given at generation time (the template with add_generation_prompt), tokenized on
    their own; the rest of the exchange is tokenized after them."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    prompt_text = tok.render(messages, add_generation_prompt=True)
    full_text = tok.render([*messages, {"role": "assistant", "content": response}], add_generation_prompt=False)
    if not full_text.startswith(prompt_text):
        raise ValueError(
            "the chat template does not render the prompt as a prefix of the exchange, so the response cannot be "
            f"told apart from it: prompt {prompt_text[-80:]!r}, exchange {full_text[-160:]!r}. Fix the template "
            "(add_generation_prompt must open the assistant's turn) in tokenizer_config.json's chat_template"
        )
    prompt_ids, rest_ids = tok.encode_batch([prompt_text, full_text[len(prompt_text) :]])
    if tok.eos_id not in rest_ids:
        raise ValueError(
            f"the chat template ends the assistant's turn without the tokenizer's EOS (id {tok.eos_id}): "
            f"{full_text[len(prompt_text) :][-80:]!r}; a model trained on it would never stop. Make the template "
            "close the turn with eos_token, or set eos_token to the token that closes it (tokenizer_config.json)"
        )
    end = rest_ids.index(tok.eos_id) + 1
    labels = [IGNORE_INDEX] * len(prompt_ids) + rest_ids[:end] + [IGNORE_INDEX] * (len(rest_ids) - end)
    return LabeledExample(input_ids=prompt_ids + rest_ids, labels=labels)

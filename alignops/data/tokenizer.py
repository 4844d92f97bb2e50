"""The byte-level BPE tokenizer (Hugging Face `tokenizers`), trained on the corpus train split.

Byte-level, so any UTF-8 text encodes with no unknown token, Chinese included; the special tokens frame the
chat/SFT template:  <|user|>\n{prompt}<|assistant|>\n{response}<|endoftext|>

    info = train_tokenizer(texts, vocab_size=8192, min_frequency=2, out_dir=Path(".alignops/tokenizer"))
    tok = load_tokenizer(info.path)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from alignops.config import SPECIAL_TOKENS

TOKENIZER_FILE = "tokenizer.json"
META_FILE = "tokenizer_meta.json"
REPLACEMENT = "\ufffd"  # what the byte-level decoder writes for bytes that are not (yet) a whole character
MAX_PARTIAL_TOKENS = 3  # a UTF-8 character is at most 4 bytes: at most 3 trailing tokens hold a cut-off one


@dataclass(frozen=True)
class TokenizerInfo:
    path: Path  # tokenizer.json
    sha256: str  # digest of tokenizer.json: the tokenizer's identity in run tags
    vocab_size: int
    special_tokens: dict[str, int]
    data_version: str | None


def chat_template(prompt: str, response: str | None = None) -> str:
    """The SFT/chat format; without a response it is the prompt a model continues."""
    text = f"<|user|>\n{prompt}<|assistant|>\n"
    return text if response is None else f"{text}{response}<|endoftext|>"


def chat_messages(messages: list[dict[str, str]]) -> str:
    """A conversation in the chat template, up to the final assistant turn (which the model is to write): earlier
    exchanges in full, a system message as the first lines of the first user turn (the template has no
    system role)."""
    system = [m["content"] for m in messages if m["role"] == "system"]
    turns = [m for m in messages if m["role"] != "system"]
    text = ""
    for i, turn in enumerate(turns[:-1]):
        if turn["role"] == "user":
            content = "\n\n".join([*system, turn["content"]]) if i == 0 else turn["content"]
            text += chat_template(content)
        else:
            text += f"{turn['content']}<|endoftext|>"
    return text


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, min_frequency: int, out_dir: Path, data_version: str | None = None
) -> TokenizerInfo:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    # No prefix space: it helps English word starts but would put a space before every Chinese passage.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / TOKENIZER_FILE
    tmp = path.with_suffix(".tmp")
    tokenizer.save(str(tmp))
    tmp.replace(path)
    info = TokenizerInfo(
        path=path,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        vocab_size=tokenizer.get_vocab_size(),
        special_tokens={t: tokenizer.token_to_id(t) for t in SPECIAL_TOKENS},
        data_version=data_version,
    )
    meta = {**asdict(info), "path": TOKENIZER_FILE}
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return info


def load_tokenizer(path: Path):
    """The trained tokenizer; a clear error when it has not been trained yet."""
    from tokenizers import Tokenizer

    if not path.is_file():
        raise FileNotFoundError(f"No tokenizer at {path}. Train it with `alignops tokenizer train`.")
    return Tokenizer.from_file(str(path))


def decode(tokenizer, ids: list[int]) -> str:
    """Token ids to text, without a character cut off at the end: generation stops after any token, and a
    byte-level token may hold only the first bytes of a character, which would show as U+FFFD. The trailing
    tokens that decode to U+FFFD are dropped (at most MAX_PARTIAL_TOKENS); text inside is left as it is."""
    text = tokenizer.decode(ids)
    if not text.endswith(REPLACEMENT):
        return text
    for drop in range(1, min(MAX_PARTIAL_TOKENS, len(ids)) + 1):
        shorter = tokenizer.decode(ids[:-drop])
        if not shorter.endswith(REPLACEMENT):
            return shorter
    return text.rstrip(REPLACEMENT)


def decode_batch(tokenizer, batch: list[list[int]]) -> list[str]:
    """decode() of every row."""
    return [decode(tokenizer, ids) for ids in batch]

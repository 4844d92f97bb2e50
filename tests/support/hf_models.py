"""Tiny random Hugging Face causal LMs, built from configs inside the tests (nothing is downloaded).

model = tiny_model("llama")                      # a transformers LlamaForCausalLM, random, eval mode
folder = save_folder(model, tmp_path / "llama")  # + a byte-level BPE tokenizer with a chat template
"""

from __future__ import annotations

from pathlib import Path

import torch

VOCAB = 320  # the tokenizer below has at most this many tokens (256 bytes + merges + specials)
EOS, PAD = "<|im_end|>", "<|pad|>"
# the ChatML template (the one SmolLM2 and Qwen2 use), with no default system prompt
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SHAPES = ("llama", "qwen2", "gpt2")


def tiny_config(shape: str):
    from transformers import GPT2Config, LlamaConfig, Qwen2Config

    small = dict(vocab_size=VOCAB, max_position_embeddings=64, tie_word_embeddings=False)
    if shape == "llama":
        return LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, **small)  # fmt: skip
    if shape == "qwen2":
        return Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, **small)  # fmt: skip
    return GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64, vocab_size=VOCAB)


def tiny_model(shape: str, seed: int = 0):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(tiny_config(shape)).eval()


def tiny_tokenizer(chat_template: str | None = CHAT_TEMPLATE, pad: bool = True, eos: bool = True):
    """A transformers fast tokenizer trained on a few sentences; its options make the broken variants."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|im_start|>", EOS, PAD]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator(["What is the capital of France?", "Paris is the capital.", "user assistant"] * 5, trainer)
    kwargs = {"eos_token": EOS} if eos else {}
    if pad:
        kwargs["pad_token"] = PAD
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)
    if chat_template is not None:
        fast.chat_template = chat_template
    return fast


def save_folder(model, folder: Path, tokenizer=None) -> Path:
    """model + tokenizer as a plain Hugging Face folder."""
    model.save_pretrained(str(folder))
    (tokenizer or tiny_tokenizer()).save_pretrained(str(folder))
    return folder

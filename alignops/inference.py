"""Text in, text out: prompts through the chat template, batched decoding, completions back.

    gen = Generator.from_dir(Path("model-folder"))
    gen.complete(["Write a tweet."], decoding("sample", max_new_tokens=40, top_p=0.9, seed=0))

Used by `alignops generate`, the served MLflow model, and the stages that log example generations.
"""

from __future__ import annotations

from pathlib import Path

import torch

from alignops.chat import chat_tokenizer
from alignops.data.loaders import collate_left_pad
from alignops.precision import autocast, inference_precision
from models.base import CausalLM
from models.generation import GenerationConfig, generate

STRATEGIES = ("greedy", "sample", "beam")


def decoding(strategy: str = "greedy", **options) -> GenerationConfig:
    """A GenerationConfig from a strategy name plus options (temperature, top_k, top_p, num_beams, ...)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown decoding strategy {strategy!r}; choose one of {STRATEGIES}.")
    if strategy == "sample":
        options["do_sample"] = True
    if strategy == "beam" and options.get("num_beams", 1) < 2:
        options["num_beams"] = 4
    if strategy != "beam":
        options.pop("num_beams", None)
    if not options.get("top_k"):  # 0 means off (MLflow params need a number)
        options["top_k"] = None
    return GenerationConfig(**options)


class Generator:
    def __init__(
        self, gpt: CausalLM, tokenizer, device: str | torch.device = "cpu", precision: str | None = None
    ) -> None:
        """gpt: any base (models.base.CausalLM); tokenizer: the project's or a transformers tokenizer; precision:
        trainer.precision's values (None: bf16 autocast where the hardware has it, alignops.precision)."""
        self.gpt = gpt.to(device).eval()
        self.tokenizer = tokenizer  # as loaded (stages encode with it directly)
        self.text = chat_tokenizer(tokenizer)  # template, EOS and pad: the same for every kind of tokenizer
        self.device = torch.device(device)
        self.precision = inference_precision(precision, self.device, self.gpt)  # resolved once, not per call
        self.eos_id, self.pad_id = self.text.eos_id, self.text.pad_id

    @classmethod
    def from_dir(cls, folder: Path, device: str | None = None, precision: str | None = None) -> Generator:
        from alignops.artifacts import load_model

        loaded = load_model(folder)
        if device is None:  # int8 kernels run on the CPU only
            device = "cuda" if torch.cuda.is_available() and loaded.meta.quantization is None else "cpu"
        return cls(loaded.gpt, loaded.tokenizer, device, precision)

    def _max_token_chars(self) -> int:
        """The longest vocabulary entry in characters (byte-level: one per byte), at least 1."""
        if not hasattr(self, "_longest"):
            self._longest = max((len(t) for t in self.tokenizer.get_vocab()), default=1)
        return self._longest

    @torch.no_grad()
    def complete(self, prompts: list[str], config: GenerationConfig, chat: bool = True) -> list[str]:
        """One completion per prompt; chat=True wraps each prompt in the model's chat template first."""
        config.eos_token_id, config.pad_token_id = self.eos_id, self.pad_id
        room = self.gpt.max_positions - config.max_new_tokens
        if room < 1:
            raise ValueError(
                f"max_new_tokens={config.max_new_tokens} leaves no room for a prompt in a "
                f"{self.gpt.max_positions}-token context."
            )
        # Only the last `room` tokens are kept: cut each prompt first to the characters that can hold them (a token
        # spans at most max_token_chars), so a 10 MB prompt costs no more than a long one.
        keep = (room + 1) * self._max_token_chars()
        texts = [self.text.chat(p[-keep:]) if chat else p[-keep:] for p in prompts]
        rows = [{"input_ids": torch.tensor(ids[-room:])} for ids in self.text.encode_batch(texts)]
        batch = collate_left_pad(self.pad_id)(rows)  # keep each prompt's end; every row ends where generation starts
        input_ids, mask, width = batch["input_ids"], batch["attention_mask"], batch["input_ids"].size(1)
        with autocast(self.precision, self.device):  # an int8 model: fp32
            sequences, lengths = generate(self.gpt, input_ids.to(self.device), mask.to(self.device), config)
        out = []
        for row, n in enumerate(lengths.tolist()):
            out.append(self.text.decode(sequences[row, width : width + n].tolist()))  # never a character cut at the end
        return out

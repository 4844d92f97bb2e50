"""The compression benchmark: what an original causal LM and each compressed version of it are measured on, the
same way (alignops compress and alignops distill log these figures).

    bench = Bench.build(cfg, original)              # the corpus test tokens, the eval prompts
    base = bench.measure_original(original.gpt, folder)   # its greedy outputs become the agreement reference
    figures = bench.measure(compressed_gpt, compressed_folder)
    deltas(figures, base)                           # compress/size_ratio, speedup, test_loss_delta, ...

Figures:
  size_mb        bytes of the weight files on disk / 1e6; gzip_mb: those files gzip-compressed (level 6)
  tokens_per_s   greedy decoding on the CPU with one thread, batch 1, the eval prompts, max_new_tokens each with
                 EOS ignored (every model generates the same count); the faster of two passes
  params, nonzero_share   stored weights (a tied embedding/lm_head matrix once) and the share of them not zero
  test_loss, test_ppl     next-token loss on the corpus test split (alignops.evaluation.scoring.lm_loss)
  agreement, exact_match  greedy outputs (EOS honoured) against the original's: the share of positions with the
                 same token over the longer output, and the share of prompts with identical outputs

Every figure is read in fp32, without the bf16 autocast evaluation runs under (alignops.precision): the int8
kernels have no bf16 path, and a delta against the original must come from the compression alone.
"""

from __future__ import annotations

import dataclasses
import gzip
import time
from dataclasses import dataclass
from pathlib import Path

from alignops.artifacts import WEIGHT_FILES
from alignops.chat import chat_tokenizer
from alignops.config import PipelineConfig
from alignops.data import datasets
from alignops.errors import ModelError
from alignops.stages.training import spread


class CompressionError(ModelError):
    """A model that cannot be compressed or measured here (not a causal LM, already int8, not registered, a
    context too short for the benchmark's prompts)."""


@dataclass(frozen=True)
class Figures:
    size_mb: float
    gzip_mb: float
    tokens_per_s: float
    params: int
    nonzero_share: float
    test_loss: float
    test_ppl: float
    agreement: float
    exact_match: float

    def metrics(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}{k}": float(v) for k, v in dataclasses.asdict(self).items()}


def deltas(figures: Figures, original: Figures) -> dict[str, float]:
    """A compressed version's figures as ratios and differences to the original's."""
    return {
        "compress/size_ratio": figures.size_mb / original.size_mb,
        "compress/speedup": figures.tokens_per_s / original.tokens_per_s,
        "compress/test_loss_delta": figures.test_loss - original.test_loss,
        "compress/test_ppl_delta": figures.test_ppl - original.test_ppl,
    }


class Bench:
    """What every model is measured on: the corpus test tokens, the eval prompts, the original's greedy outputs."""

    def __init__(self, cfg: PipelineConfig, tokens, prompts: list, eos: int, pad: int) -> None:
        self.cfg, self.tokens, self.prompts, self.eos, self.pad = cfg, tokens, prompts, eos, pad
        self.reference: list[list[int]] = []  # the original's greedy outputs (measure_original)
        self.original: Figures

    def measure_original(self, gpt, folder: Path) -> Figures:
        """The original's figures; its greedy outputs become the reference of agreement."""
        self.reference = self._greedy(gpt, self.prompts, stop_at_eos=True)
        self.original = self.measure(gpt, folder)
        return self.original

    @classmethod
    def build(cls, cfg: PipelineConfig, original) -> Bench:
        """The bench of a LoadedModel original; a CompressionError when its context or the data leave nothing."""
        import torch

        from alignops.evaluation.scoring import corpus_ids

        cc, tok = cfg.compress, chat_tokenizer(original.tokenizer)
        room = original.gpt.max_positions - cc.max_new_tokens
        if room < 1:
            raise CompressionError(
                f"compress.max_new_tokens={cc.max_new_tokens} leaves no room for a prompt in the model's "
                f"{original.gpt.max_positions}-token context; lower it."
            )
        tokens = corpus_ids(tok, [r["text"] for r in datasets.load_split(cfg.data.data_dir, "corpus", "test")])
        records = spread(datasets.load_split(cfg.data.data_dir, "eval_prompts", "test"), cc.eval_prompts)
        prompts = [torch.tensor([ids[-room:]]) for ids in tok.encode_batch([tok.chat(r["prompt"]) for r in records])]
        if not prompts or len(tokens) < 2:
            raise CompressionError(f"The eval prompts or the corpus test split under {cfg.data.data_dir} are empty.")
        return cls(cfg, tokens, prompts, tok.eos_id, tok.pad_id)

    def measure(self, gpt, folder: Path) -> Figures:
        """The figures of one model (the docstring of this module says what each is)."""
        import math

        from alignops.evaluation.scoring import lm_loss
        from models.compression import count_parameters

        agreement, exact = agreement_with(self._greedy(gpt, self.prompts, stop_at_eos=True), self.reference)
        loss, _ = lm_loss(gpt, self.tokens, batch_size=8, max_tokens=self.cfg.compress.max_lm_tokens)
        params, nonzero = count_parameters(gpt)
        size, packed = size_on_disk(folder)
        return Figures(size / 1e6, packed / 1e6, self._tokens_per_s(gpt), params, nonzero / params, loss,
                       math.exp(loss), agreement, exact)  # fmt: skip

    def _greedy(self, gpt, prompts: list, stop_at_eos: bool) -> list[list[int]]:
        import torch

        from models.generation import GenerationConfig, generate

        config = GenerationConfig(max_new_tokens=self.cfg.compress.max_new_tokens, pad_token_id=self.pad,
                                  eos_token_id=self.eos if stop_at_eos else None)  # fmt: skip
        gpt.eval()
        out = []
        with torch.no_grad():
            for ids in prompts:  # batch 1: an int8 model's activation scale would depend on the batch
                sequences, lengths = generate(gpt, ids, None, config)
                out.append(sequences[0, ids.size(1) : ids.size(1) + int(lengths[0])].tolist())
        return out

    def _tokens_per_s(self, gpt) -> float:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # comparable across machines and models; a loaded 2-core box swings less
        try:
            self._greedy(gpt, self.prompts[:1], stop_at_eos=False)  # warm-up: allocator, kernels' first calls
            best = float("inf")
            for _ in range(2):
                start = time.perf_counter()
                self._greedy(gpt, self.prompts, stop_at_eos=False)  # every model makes max_new_tokens per prompt
                best = min(best, time.perf_counter() - start)
        finally:
            torch.set_num_threads(threads)
        return len(self.prompts) * self.cfg.compress.max_new_tokens / best


def agreement_with(outputs: list[list[int]], reference: list[list[int]]) -> tuple[float, float]:
    """(mean share of positions with the same token, over the longer output; share of identical outputs)."""
    shares = []
    for a, b in zip(outputs, reference, strict=True):
        longer = max(len(a), len(b))
        shares.append(sum(x == y for x, y in zip(a, b, strict=False)) / longer if longer else 1.0)
    exact = sum(a == b for a, b in zip(outputs, reference, strict=True))
    return sum(shares) / len(shares), exact / len(outputs)


def size_on_disk(folder: Path) -> tuple[int, int]:
    """(bytes of the weight files, bytes of the same gzip-compressed at level 6)."""
    size = packed = 0
    for name in WEIGHT_FILES:
        path = folder / name
        if path.is_file():
            data = path.read_bytes()
            size += len(data)
            packed += len(gzip.compress(data, compresslevel=6))
    return size, packed

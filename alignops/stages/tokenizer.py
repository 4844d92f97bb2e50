"""Tokenizer stage: train the byte-level BPE on the validated corpus train split and record it.

result = run(load_config("tiny"))
"""

from __future__ import annotations

from dataclasses import dataclass

from alignops import settings, tracking
from alignops.config import PipelineConfig
from alignops.data import datasets, versioning
from alignops.data.tokenizer import TokenizerInfo, load_tokenizer, train_tokenizer
from alignops.stages.data import require_valid


@dataclass(frozen=True)
class TokenizerResult:
    info: TokenizerInfo
    chars_per_token: dict[str, float]  # on the corpus val split, per language: higher compresses better
    run_id: str


def run(cfg: PipelineConfig, parent_run_id: str | None = None) -> TokenizerResult:
    require_valid(cfg)
    out_dir = cfg.tokenizer.output_dir or settings.home() / "tokenizer"
    with tracking.stage_run("tokenizer", cfg, cfg.tokenizer, parent_run_id) as stage:
        train = datasets.load_split(cfg.data.data_dir, "corpus", "train")
        info = train_tokenizer(
            (r["text"] for r in train),
            cfg.tokenizer.vocab_size,
            cfg.tokenizer.min_frequency,
            out_dir,
            data_version=versioning.data_version(),
        )
        tok = load_tokenizer(info.path)
        chars_per_token = {}
        for lang in ("en", "zh"):
            texts = [r["text"] for r in datasets.load_split(cfg.data.data_dir, "corpus", "val") if r["lang"] == lang]
            n_tokens = sum(len(e.ids) for e in tok.encode_batch(texts))
            chars_per_token[lang] = sum(map(len, texts)) / max(n_tokens, 1)
        stage.set_tags({tracking.TOKENIZER_HASH_TAG: info.sha256[:12]})
        stage.log_metrics(
            {"tokenizer/vocab_size": info.vocab_size}
            | {f"tokenizer/chars_per_token_{lang}": v for lang, v in chars_per_token.items()}
        )
        stage.log_artifact(out_dir, "tokenizer")
        return TokenizerResult(info, chars_per_token, stage.run_id)

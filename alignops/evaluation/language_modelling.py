"""Language modelling on the held-out corpus (test split): loss and perplexity of next-token prediction.

score_corpus(cfg, model)     # {"eval/loss": ..., "eval/ppl": ..., "eval/lm_tokens": ...}
"""

from __future__ import annotations

from alignops.config import PipelineConfig
from alignops.data import datasets


def score_corpus(cfg: PipelineConfig, model) -> dict[str, float]:
    """eval/loss, eval/ppl (token-weighted, at most evaluate.max_lm_tokens) and eval/lm_tokens of a LoadedModel."""
    from alignops.evaluation.metrics import perplexity
    from alignops.evaluation.scoring import corpus_ids, lm_loss

    texts = [r["text"] for r in datasets.load_split(cfg.data.data_dir, "corpus", "test")]
    ids = corpus_ids(model.tokenizer, texts)
    loss, n = lm_loss(model.gpt, ids, cfg.evaluate.batch_size, cfg.evaluate.max_lm_tokens)
    return {"eval/loss": loss, "eval/ppl": perplexity(loss), "eval/lm_tokens": float(n)}

"""The instruction set (sft test split): a causal LM's answers to its sentiment tasks (the only ones with a
checkable answer) parsed and scored against the reference answer's label, and the loss of the reference
responses over every task.

    score_instructions(cfg, model)   # eval/instruct_accuracy, ..., eval/instruct_loss, eval/instruct_ppl
"""

from __future__ import annotations

from alignops.config import PipelineConfig
from alignops.data import datasets
from alignops.evaluation.classification import LABELS
from alignops.stages.training import spread

SENTIMENT_TASK = datasets.SENTIMENT_SOURCE  # sft sources whose answer is a label


def score_instructions(cfg: PipelineConfig, model) -> dict[str, float]:
    """eval/instruct_... figures of a LoadedModel causal LM (absent where the set has no such task)."""
    from alignops.data.loaders import SFTDataset, pad_id
    from alignops.evaluation.metrics import classification_metrics, parse_label, perplexity
    from alignops.evaluation.scoring import generate_responses, response_loss

    ec = cfg.evaluate
    records = datasets.load_split(cfg.data.data_dir, "sft", "test")
    metrics: dict[str, float] = {}
    tasks = spread([r for r in records if r["source"].startswith(SENTIMENT_TASK)], ec.max_instruction_examples)
    gold = [parse_label(r["response"]) for r in tasks]
    tasks = [r for r, g in zip(tasks, gold, strict=True) if g is not None]
    if tasks:
        answers = generate_responses(
            model.gpt, model.tokenizer, [r["prompt"] for r in tasks], ec.answer_tokens, ec.batch_size, sample=False
        ).texts
        scored = classification_metrics(
            [parse_label(r["response"]) for r in tasks], [parse_label(a) for a in answers], LABELS
        )
        metrics |= scored.as_metrics("eval/instruct_")
    examples = SFTDataset(spread(records, ec.max_instruction_examples), model.tokenizer, model.gpt.max_positions)
    if len(examples):
        loss, n = response_loss(model.gpt, [examples[i] for i in range(len(examples))], pad_id(model.tokenizer),
                                ec.batch_size)  # fmt: skip
        metrics |= {"eval/instruct_loss": loss, "eval/instruct_ppl": perplexity(loss), "eval/instruct_tokens": float(n)}
    return metrics

"""The instruction set (sft test split): a causal LM's answers to its sentiment tasks (the only ones with a
checkable answer) parsed and scored against the reference answer's label, and the loss of the reference
responses over every task.

    score_instructions(cfg, model)   # eval/instruct_accuracy, ..., eval/instruct_loss, eval/instruct_ppl
"""

from __future__ import annotations

from alignops.chat import chat_tokenizer
from alignops.config import PipelineConfig
from alignops.data import datasets
from alignops.evaluation.classification import LABELS
from alignops.stages.training import spread

SENTIMENT_TASK = datasets.SENTIMENT_SOURCE  # sft sources whose answer is a label


def score_instructions(cfg: PipelineConfig, model) -> dict[str, float]:
    """eval/instruct_... figures of a LoadedModel causal LM (absent where the set has no such task)."""
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
    examples = reference_examples(spread(records, ec.max_instruction_examples), model)
    if examples:
        loss, n = response_loss(model.gpt, examples, chat_tokenizer(model.tokenizer).pad_id, ec.batch_size)
        metrics |= {"eval/instruct_loss": loss, "eval/instruct_ppl": perplexity(loss), "eval/instruct_tokens": float(n)}
    return metrics


def reference_examples(records: list[dict], model) -> list[dict]:
    """The SFT pairs as input_ids and labels (IGNORE_INDEX on the prompt) in at most the model's context, as SFT
    trains on them: alignops.data.loaders.SFTDataset for the project's tokenizer; for a Hugging Face one the
    base's own chat template (alignops.chat.response_labels), cut by SFTDataset's rule (the prompt keeps its end,
    the response its start)."""
    import torch

    from alignops.chat import ProjectTokenizer, response_labels
    from alignops.data.loaders import SFTDataset
    from alignops.evaluation.scoring import lm_block

    # at most lm_block tokens: a real base's whole context padded a batch to thousands of tokens (tens of GB of
    # logits on a CPU); every own-GPT context is shorter, so its examples are unchanged
    tok, max_len = chat_tokenizer(model.tokenizer), lm_block(model.gpt)
    if isinstance(tok, ProjectTokenizer):
        examples = SFTDataset(records, model.tokenizer, max_len)
        return [examples[i] for i in range(len(examples))]
    out = []
    for r in records:  # an imported chat's response is its final assistant turn
        labeled = response_labels(tok, r["messages"][:-1] if r.get("messages") else r["prompt"], r["response"])
        cut = labeled.prompt_length
        prompt, response = labeled.input_ids[:cut], labeled.input_ids[cut:]
        keep = len(prompt) if len(prompt) + len(response) <= max_len else max(max_len - len(response), max_len // 2)
        start, end = cut - keep, cut - keep + max_len
        out.append(
            {"input_ids": torch.tensor(labeled.input_ids[start:end]), "labels": torch.tensor(labeled.labels[start:end])}
        )
    return out

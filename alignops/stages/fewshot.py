"""Few-shot evaluation: a causal LM classifies the held-out sentiment set with k in fewshot.shots solved train
examples in its prompt, no fine-tuning; accuracy and macro F1 by k, with 95% intervals, logged to one MLflow run
"fewshot" with the k-shot figure (figures/fewshot.png).

    result = run(load_config("tiny"), model_uri="models:/alignops-base/1")   # or: alignops fewshot --model ...
    result.table[0].k, result.table[0].accuracy, result.table[0].f1_low, ...

Metrics: fewshot/{accuracy,f1}_k<k> with _low/_high, fewshot/unparseable_rate_k<k>, fewshot/truncated_rate_k<k>
(prompts longer than the context keep their end: the question and the last demonstrations), fewshot/examples_k<k>.
"""

from __future__ import annotations

from dataclasses import dataclass

from alignops import settings, tracking
from alignops.config import PipelineConfig
from alignops.data import datasets
from alignops.evaluation.fewshot import ShotScore
from alignops.stages import training
from alignops.stages.classify import LABELS
from alignops.stages.data import require_valid
from alignops.stages.evaluate import CAUSAL_LM, EvaluationError, ModelCache


@dataclass(frozen=True)
class FewShotResult:
    run_id: str
    model_uri: str
    table: list[ShotScore]  # one row per k, in fewshot.shots order


def run(cfg: PipelineConfig, model_uri: str | None = None, parent_run_id: str | None = None) -> FewShotResult:
    require_valid(cfg)
    from alignops.evaluation import figures
    from alignops.evaluation.fewshot import draw_demonstrations, fewshot_text, score_shot
    from alignops.evaluation.metrics import parse_label
    from alignops.inference import Generator, decoding

    fc, ec = cfg.fewshot, cfg.evaluate
    uri = tracking.version_uri(model_uri or fc.model or f"models:/{cfg.tracking.model_prefix}-base/latest")
    model = ModelCache().get(uri)
    if model.meta.kind != CAUSAL_LM:
        raise EvaluationError(f"{uri} is a {model.meta.kind} model: few-shot prompting needs a causal_lm "
                              "(a base, SFT or policy version).")  # fmt: skip
    queries = training.spread(datasets.load_split(cfg.data.data_dir, "classification", "test"), fc.max_examples)
    train = datasets.load_split(cfg.data.data_dir, "classification", "train")
    demos = draw_demonstrations(queries, train, max(fc.shots), cfg.seed)
    device = next(model.gpt.parameters()).device
    generator = Generator(model.gpt, model.tokenizer, device, cfg.trainer.precision)  # own GPT or HF base
    room = model.gpt.max_positions - ec.answer_tokens  # what Generator.complete keeps of a prompt
    gold = [q["label"] for q in queries]
    table = []
    for k in fc.shots:
        prompts = [fewshot_text(generator.text, q, d[:k]) for q, d in zip(queries, demos, strict=True)]
        lengths = [len(ids) for ids in generator.text.encode_batch(prompts)]
        truncated = sum(n > room for n in lengths)
        answers: list[str] = [""] * len(prompts)
        by_length = sorted(range(len(prompts)), key=lengths.__getitem__)  # batches of like lengths: little padding
        for start in range(0, len(prompts), ec.batch_size):  # greedy: the answer the model finds most likely
            rows = by_length[start : start + ec.batch_size]
            greedy = decoding("greedy", max_new_tokens=ec.answer_tokens)
            done = generator.complete([prompts[r] for r in rows], greedy, chat=False)
            for row, answer in zip(rows, done, strict=True):
                answers[row] = answer
        table.append(score_shot(k, gold, [parse_label(a) for a in answers], LABELS, truncated, cfg.seed))

    with tracking.stage_run("fewshot", cfg, fc, parent_run_id) as stage:
        stage.set_tags({tracking.MODEL_TAG: uri})
        stage.log_metrics({name: value for row in table for name, value in row.as_metrics().items()})
        plot = figures.fewshot_curve(table, settings.home() / "evaluations" / stage.run_id / "fewshot.png", uri)
        stage.log_artifact(plot, "figures")
        return FewShotResult(stage.run_id, uri, table)

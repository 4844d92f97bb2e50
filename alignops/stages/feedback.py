"""Human feedback into the data: rankings submitted in the dashboard since the last data version are appended
to the rankings dataset, validated, and versioned with DVC; the reward model then retrains on them.

    result = collect(load_config("tiny"))      # or, with the retraining after it: alignops feedback

The data holds its own watermark (data/rankings/feedback.json: the highest store row it contains), used to
count what is new. Each collection rewrites the dashboard part of the rankings from the store's current labels
(a labeler's correction replaces the ranking it supersedes, never sits beside it), so a rebuild of data/ from
the sources, which drops the labels and the watermark together, is repaired by the next collection. Each
label lands in the split its content hash picks (prompt and the set of responses), as the build does, so the
same comparison never sits in two splits. Fewer new labels than feedback.min_new_labels: nothing is written,
and the result says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from alignops import cache, tracking
from alignops.config import PipelineConfig
from alignops.data import datasets, staging, versioning
from alignops.data.prepare import mixed_out, split_of

WATERMARK_FILE = "feedback.json"


@dataclass(frozen=True)
class FeedbackResult:
    new_labels: int  # rankings submitted (or corrected) since the data's watermark
    total_labels: int  # current dashboard rankings the data holds now
    data_version: str | None  # the new data version; None when nothing was added
    run_id: str | None
    message: str


def watermark(data_dir: Path) -> dict:
    """What the data already holds from the store: {"last_id": highest store row, "count": rankings}."""
    path = data_dir / "rankings" / WATERMARK_FILE
    if not path.is_file():
        return {"last_id": 0, "count": 0}
    return json.loads(path.read_text(encoding="utf-8"))


def collect(cfg: PipelineConfig, parent_run_id: str | None = None, database_url: str | None = None) -> FeedbackResult:
    from alignops.feedback.store import Store

    data_dir = cfg.data.data_dir
    seen = watermark(data_dir)
    store = Store(database_url)
    try:
        new, _ = store.export_rankings(after_id=seen["last_id"])
        if len(new) < cfg.feedback.min_new_labels:
            message = (
                f"{len(new)} new ranking(s) in the preference store since row {seen['last_id']}; "
                f"retraining needs at least feedback.min_new_labels={cfg.feedback.min_new_labels}: nothing to do."
            )
            return FeedbackResult(len(new), seen["count"], None, None, message)
        current, last_id = store.export_rankings(after_id=0)
    finally:
        store.close()

    with tracking.stage_run("feedback-collect", cfg, cfg.feedback, parent_run_id) as run:
        by_split = _rewrite(cfg, current, {"last_id": last_id, "count": len(current)})
        version = versioning.track(data_dir)
        run.set_tags({tracking.DATA_VERSION_TAG: version})
        # the data for this build config is now the built data plus these labels: a later pipeline run reuses it
        cache.record(run.run_id, cache.stage_key(cache.DATA_BUILD, cfg), {"data_version": version})
        run.log_metrics(
            {"feedback/new_labels": len(new), "feedback/total_labels": len(current)}
            | {f"feedback/{split}_labels": n for split, n in by_split.items()}
        )
        annotators = sorted({r["annotator"] for r in new})
        message = (
            f"{len(new)} new ranking(s) by {len(annotators)} annotator(s); the rankings data holds "
            f"{len(current)} from the dashboard; data version {version}"
        )
        return FeedbackResult(len(new), len(current), version, run.run_id, message)


def deployed_sft(cfg: PipelineConfig) -> str:
    """Where the loop starts: the SFT model the champion policy was trained from; the newest SFT model if there is
    no champion."""
    champion = tracking.alias_uri(f"{cfg.tracking.model_prefix}-policy", "champion")
    if champion is not None:
        parent = tracking.model_version_tags(champion).get(tracking.PARENT_MODEL_TAG)
        if parent and parent != "none":
            return parent
    return tracking.pin_uri(f"models:/{cfg.tracking.model_prefix}-sft/latest")


def _rewrite(cfg: PipelineConfig, records: list[dict], state: dict) -> dict[str, int]:
    """The dashboard's current rankings into data/rankings/<split>.jsonl in place of the ones there before,
    checked against the rankings suite on a copy first, then swapped in (staging.update_data): a failed check
    or a crash leaves the old rankings as they were."""
    from alignops.feedback.store import SOURCE
    from alignops.stages.data import bounds

    counts = dict.fromkeys(datasets.SPLITS, 0)

    def edit(copy: Path) -> None:
        for split in datasets.SPLITS:  # drop the previous collection's labels; the build's records stay
            path = copy / "rankings" / f"{split}.jsonl"
            kept = [line for line in path.read_text(encoding="utf-8").splitlines(keepends=True)
                    if json.loads(line).get("source") != SOURCE]  # fmt: skip
            path.write_text("".join(kept), encoding="utf-8", newline="\n")
        for record in records:
            key = record["prompt"] + "\x00" + "\x00".join(sorted(record["responses"]))
            split = split_of(key, cfg.data.split_salt, cfg.data.val_fraction, cfg.data.test_fraction)
            if split == "train" and mixed_out(key, SOURCE, cfg.data.mix_weights()):  # data.mix: "dashboard=0.5"
                continue
            with (copy / "rankings" / f"{split}.jsonl").open("a", encoding="utf-8", newline="\n") as fh:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            counts[split] += 1
        (copy / "rankings" / WATERMARK_FILE).write_text(json.dumps(state) + "\n", encoding="utf-8")

    refusal = (
        f"The new dashboard rankings fail the rankings suite; nothing was added to {cfg.data.data_dir / 'rankings'}."
        "\nFix or supersede the offending rankings in the dashboard, then run again."
    )
    staging.update_data(cfg.data.data_dir, edit, bounds(cfg), refusal, sets=["rankings"])
    return counts


LABEL_ANSWER_TOKENS = 48  # long enough for a sentence, short enough to read and rank quickly


def label_model_uri(cfg: PipelineConfig) -> str:
    """steps.label_model as a pinned models:/ URI: a pretrained name is fetched and registered (offline once
    cached; the same version comes back on later runs)."""
    from alignops import base_models, settings

    name = cfg.steps.label_model
    if tracking.ModelRef.is_registry_uri(name):
        return tracking.pin_uri(name)
    return base_models.fetch_and_register(name, cfg.data.cache_dir or settings.home() / "cache").uri


def queue_answers(
    model_uri: str, samples_path: Path, database_url: str | None = None, precision: str | None = None
) -> int:
    """Another model's greedy answers to the prompts of an evaluation's samples, queued beside them in the
    preference store (same sample ids, so one labeling task holds them all). For a from-scratch tiny policy this
    is what keeps a labeler's first task from being byte noise alone, and the rankings then say how far the policy
    is from a real model. Returns the answers added (idempotent per model version and prompt, like queue_samples).
    precision: trainer.precision (None: bf16 autocast where the hardware has it, alignops.precision)."""
    from alignops.artifacts import load_model
    from alignops.data.sources import read_jsonl
    from alignops.evaluation.scoring import generate_responses
    from alignops.feedback.store import Store
    from alignops.precision import inference_autocast

    rows = read_jsonl(samples_path)
    if not rows:
        return 0
    model = load_model(tracking.resolve_model(model_uri))
    model.gpt.eval()
    with inference_autocast(precision, next(model.gpt.parameters()).device, model.gpt):
        out = generate_responses(
            model.gpt, model.tokenizer, [r["prompt"] for r in rows], LABEL_ANSWER_TOKENS, batch_size=16, sample=False
        )
    samples = [
        {"sample_id": r["sample_id"], "prompt": r["prompt"], "completion": text}
        for r, text in zip(rows, out.texts, strict=True)
        if text.strip()
    ]
    store = Store(database_url)
    try:
        return store.import_samples(model_uri, samples)
    finally:
        store.close()


def queue_samples(samples_path: Path, database_url: str | None = None) -> int:
    """Put an evaluation's responses (the model's and its baseline's, to the same eval prompts) into the
    preference store, so labelers can rank them against each other in the dashboard. Idempotent per model
    version and prompt; empty responses are left out (nothing to judge). Returns the responses added."""
    from alignops.data.sources import read_jsonl
    from alignops.feedback.store import Store

    by_model: dict[str, list[dict]] = {}
    for row in read_jsonl(samples_path):
        answers = [
            (row["model_uri"], row["completion"], row.get("reward")),
            (row.get("baseline_uri"), row.get("baseline_completion"), row.get("baseline_reward")),
        ]
        for uri, text, reward in answers:
            if uri and text and text.strip():
                # the reward model's score lets the dashboard offer the least certain comparisons first
                sample = {"sample_id": row["sample_id"], "prompt": row["prompt"], "completion": text, "reward": reward}
                by_model.setdefault(uri, []).append(sample)
    store = Store(database_url)
    try:
        return sum(store.import_samples(uri, samples) for uri, samples in by_model.items())
    finally:
        store.close()

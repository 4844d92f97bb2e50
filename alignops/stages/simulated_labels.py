"""A simulated labeler ranks the SFT policy's own continuations: Ziegler et al. (2019)'s loop, its people replaced
by a model of them. The sentiment experiment's reward model learns from these rankings when
experiment.simulated_labels > 0.

    counts = label(cfg, sft_uri)   # K continuations per rollout prefix, ranked -> data/rankings, validated, versioned

Why: a reward model trained on the VADER raters' rankings of human-written sentences reads the sentiment of such
sentences (0.81 on their test pairs), not of what a 135M policy writes: on pairs of the SFT policy's continuations
of held-out prefixes it ordered them as VADER does 0.47-0.51 of the time, chance. Ziegler's labelers ranked samples
of the policy itself. Here nobody can: the labeler is a model of the VADER raters, a ridge regression of each
text's mean rating on its character n-grams, negation scopes marked (fit on the texts they rated, rankings/train),
and every record it writes says so (annotator "simulated:..."; derived). It is neither judge of the experiment
(the VADER and AFINN lexicons), and it reads words, not sentences, so it carries over to continuations: 0.66
agreement with VADER on the same SFT pairs. It ties its close calls (experiment.labeler_tie_margin): where it
separates two continuations by little it orders them as VADER does hardly more often than chance, and a tie trains
nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from alignops import tracking
from alignops.config import PipelineConfig
from alignops.data import datasets, staging, versioning
from alignops.data.prepare import content_hash
from alignops.errors import ModelError
from alignops.stages import training

LABELER = "simulated:ridge-on-vader-ratings"
SOURCE = "simulated/vadersentiment"  # a source of its own: reward.sources selects it, the rebuild drops it
VAL_SEED_OFFSET = 1_000_003  # the val prefixes' sampling streams: none of the train batches' (seed + batch index)


_NEGATOR = re.compile(r"(?:not|no|never|nothing|none|nobody|neither|nor|cannot|without|hardly|barely|\w+n't)", re.I)
_CLAUSE_END = re.compile(r"[.,:;!?]")


def mark_negation(text: str) -> str:
    """`text` with every word after a negator, up to the next punctuation, prefixed neg_ (Pang et al. 2002): "not a
    bad thing." -> "not neg_a neg_bad neg_thing .". A bag of n-grams then reads "bad" and "not ... bad" apart, as
    the raters do (the unmarked labeler scored "it is not a disaster" far below neutral)."""
    out, negated = [], False
    for token in re.findall(r"[\w']+|[^\w\s]", text):
        if _CLAUSE_END.fullmatch(token):  # a scope ends at punctuation, which is never marked
            negated = False
            out.append(token)
            continue
        out.append("neg_" + token if negated else token)
        negated = negated or bool(_NEGATOR.fullmatch(token))
    return " ".join(out)


def _marked(texts: Sequence[str]) -> list[str]:
    return [mark_negation(t) for t in texts]


def fit_labeler(records: Sequence[dict]) -> Callable[[Sequence[str]], list[float]]:
    """A model of the raters behind rankings `records` (those with per-response ratings): ridge regression of each
    distinct text's mean rating on TF-IDF character 2-5-grams of the text with its negation scopes marked
    (mark_negation). Returns text -> predicted rating.

    The marking, measured on the VADER raters' held-out rankings (val and test, 547 rankings, 2,665 pairs): ordered
    as the raters did 0.800 of the time against 0.789 unmarked, a paired difference of +0.012 [0.001, 0.023] (95 %
    bootstrap over rankings); on val and test alone the intervals, [-0.003, 0.030] and [-0.005, 0.024], include 0."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    rated: dict[str, float] = {}
    for record in records:
        for text, ratings in zip(record["responses"], record.get("ratings") or [], strict=False):
            if ratings:
                rated[text] = sum(ratings) / len(ratings)
    if len(rated) < 2:
        raise ValueError(
            f"the simulated labeler needs rated texts to learn from; the rankings hold {len(rated)}: "
            "label experiment.sources whose rankings carry raters' ratings (vadersentiment/)"
        )
    model = make_pipeline(
        FunctionTransformer(_marked),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=min(3, len(rated)), sublinear_tf=True),
        Ridge(alpha=1.0),
    )
    model.fit(list(rated), list(rated.values()))
    return lambda texts: [float(v) for v in model.predict(list(texts))]


def labeler_accuracy(labeler: Callable[[Sequence[str]], list[float]], records: Sequence[dict]) -> float | None:
    """How often the labeler orders the pairs of held-out rankings (the raters', never fit on) as they were
    ranked; a labeler tie counts half. None when there is no pair."""
    from alignops.data.preferences import expand_rankings

    pairs = expand_rankings(records, weight_by=None)
    if not pairs:
        return None
    chosen, rejected = labeler([p.chosen for p in pairs]), labeler([p.rejected for p in pairs])
    return sum(1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected, strict=True)) / len(pairs)


def ranking_of(scores: Sequence[float], tie_margin: float = 0.0) -> list:
    """A ranking in the rankings set's form, best first: [[0, 2], 1, 3]. Scores tie in one group when each lies
    within tie_margin of the next higher one in it (a new group starts at a gap wider than tie_margin); at 0 only
    equal scores tie."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    groups = [[order[0]]] if order else []
    for i in order[1:]:
        if scores[groups[-1][-1]] - scores[i] > tie_margin:
            groups.append([])
        groups[-1].append(i)
    return [sorted(g) if len(g) > 1 else g[0] for g in groups]


def rankings(
    prompts: Sequence[str],
    continuations: Sequence[str],
    k: int,
    labeler: Callable[[Sequence[str]], list[float]],
    tie_margin: float = 0.0,
) -> list[dict]:
    """One ranking record per prompt of its k continuations (continuations[i * k : (i + 1) * k] are prompt i's),
    ordered by the labeler, ratings within tie_margin tied (ranking_of); a prompt whose continuations repeat one
    another or all tie is left out (nothing to compare)."""
    scores = labeler(continuations)
    out = []
    for i, prompt in enumerate(prompts):
        texts, mine = list(continuations[i * k : (i + 1) * k]), scores[i * k : (i + 1) * k]
        ranking = ranking_of(mine, tie_margin)
        if len(set(texts)) < k or not all(t.strip() for t in texts) or len(ranking) < 2:
            continue
        out.append({
            "prompt": prompt, "responses": texts, "ranking": ranking, "annotator": LABELER,
            "source": SOURCE, "derived": True, "agreement": None,
        })  # fmt: skip
    return out


def assign_splits(train: list[dict], held: list[dict], others: list[dict], salt: str) -> dict[str, list[dict]]:
    """The rankings set's splits: `train` (rankings of train prefixes) in train; `held` (of val prefixes) dealt
    alternately into val and test in content-hash order (each gets half, neither is left empty by chance), less any
    that shares a continuation with a train ranking (`others`: the set's other train rankings; a short, common
    continuation written twice would be a cross-split leak)."""
    trained = {t for r in [*others, *train] for t in r["responses"]}
    kept = [r for r in held if not trained & set(r["responses"])]
    kept.sort(key=lambda r: content_hash(r["prompt"] + "\x00" + "\x00".join(sorted(r["responses"])), salt))
    return {"train": list(train), "val": kept[0::2], "test": kept[1::2]}


def label(cfg: PipelineConfig, sft_uri: str, parent_run_id: str | None = None) -> dict[str, int]:
    """experiment.simulated_labels rollout prefixes of the train split (and an eighth as many, at least 4, of the
    val split, halved into val and test), each continued labels_per_prompt times by the SFT policy exactly as the
    experiment samples (fixed length, its temperature), ranked by the simulated labeler, in place of any earlier
    simulated rankings in data/rankings (checked by the rankings suite on a copy first, then versioned). Returns
    the rankings written per split."""
    from alignops.evaluation.models import ModelCache
    from alignops.evaluation.scoring import generate_responses
    from alignops.precision import inference_autocast
    from alignops.stages.data import bounds

    ec, data_dir = cfg.experiment, cfg.data.data_dir
    rankings_train = [r for r in datasets.load_split(data_dir, "rankings", "train") if r["source"] != SOURCE]
    labeler = fit_labeler(training.of_sources(rankings_train, ec.sources))
    models = ModelCache()
    model = models.get(sft_uri)
    k, n = ec.labels_per_prompt, ec.simulated_labels
    made: dict[str, list[dict]] = {}
    for split, count in (("train", n), ("val", max(n // 8, 4))):
        prefixes = training.spread(training.of_sources(datasets.load_split(data_dir, "rollout_prompts", split),
                                                       ec.sources), count)  # fmt: skip
        prompts = [r["prompt"] for r in prefixes]
        with inference_autocast(cfg.trainer.precision, models.device, model.gpt):  # as the experiment samples
            out = generate_responses(
                model.gpt, model.tokenizer, [p for p in prompts for _ in range(k)], ec.max_new_tokens,
                ec.batch_size, True, cfg.seed + VAL_SEED_OFFSET * (split == "val"), fixed_length=ec.fixed_length,
                temperature=ec.temperature,
            )  # fmt: skip
        made[split] = rankings(prompts, out.texts, k, labeler, ec.labeler_tie_margin)
    records = assign_splits(made["train"], made["val"], rankings_train, cfg.data.split_salt)
    if not (records["train"] and records["val"] and records["test"]):
        raise ModelError(
            f"the simulated labeler made {', '.join(f'{len(r)} {s}' for s, r in records.items())} rankings of "
            f"{sft_uri}'s continuations (repeated, all-tied or leaking ones are left out); the reward model needs "
            "each split: raise experiment.simulated_labels, or lower experiment.labeler_tie_margin "
            f"({ec.labeler_tie_margin})."
        )

    def edit(copy: Path) -> None:
        for split in datasets.SPLITS:  # the build's and the dashboard's records stay as they are, line for line
            path = copy / "rankings" / f"{split}.jsonl"
            kept = [line for line in path.read_text(encoding="utf-8").splitlines(keepends=True)
                    if json.loads(line).get("source") != SOURCE]  # fmt: skip
            new = [json.dumps(r, ensure_ascii=False) + "\n" for r in records[split]]
            path.write_text("".join(kept + new), encoding="utf-8", newline="\n")

    refusal = f"The simulated labeler's rankings fail the rankings suite; nothing was added to {data_dir / 'rankings'}."
    with tracking.stage_run("experiment-labels", cfg, ec, parent_run_id) as run:
        staging.update_data(data_dir, edit, bounds(cfg), refusal, sets=["rankings"])
        version = versioning.track(data_dir)
        run.set_tags({tracking.DATA_VERSION_TAG: version, "labeler": LABELER, "policy": sft_uri})
        run.log_metrics({f"labels/{split}": float(len(r)) for split, r in records.items()})
        held_out = training.of_sources(datasets.load_split(data_dir, "rankings", "test"), ec.sources)
        accuracy = labeler_accuracy(labeler, held_out)  # how well it stands in for the raters it models
        if accuracy is not None:  # 0.0 is a figure too
            run.log_metrics({"labels/labeler_test_accuracy": accuracy})
    return {split: len(r) for split, r in records.items()}

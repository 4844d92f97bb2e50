"""What the dashboard computes, as plain functions of plain data: no Streamlit, no MLflow, no database.

Pages call these and only lay the results out, so each is tested directly (tests/dashboard/test_logic.py):

    ranking_from_order("31=2", [10, 11, 12])             ->  [[12], [10, 11]]
    agreement(export_records)                            ->  Agreement(items, comparisons, agreement, alpha)
    config_diff({"run a": cfg_a, "run b": cfg_b})        ->  rows of the keys whose values differ
    side_by_side({"sft/1": samples_1, "policy/2": samples_2})  ->  one row per sample both versions wrote
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


class FormError(ValueError):
    """What a labeler filled in cannot be submitted; the message says what to change."""


# --------------------------------------------------------------------------------------------------------
# Rank page: the response numbers typed best first ("=" ties) -> the store's ranking groups


TIE = "="


def ranking_from_order(order: str, ids: list[int]) -> list[list[int]]:
    """What a labeler typed, the response numbers best first (1 = the first response shown), to the store's
    ranking: "3142" -> [[ids[2]], [ids[0]], [ids[3]], [ids[1]]]; "=" ties its neighbours ("31=42": 1 and 4
    share second place); spaces and commas are ignored. Every response must be placed exactly once."""
    typed = [ch for ch in str(order) if not ch.isspace() and ch != ","]
    groups: list[list[int]] = []
    tie_next = False
    for ch in typed:
        if ch == TIE:
            if not groups or tie_next:
                raise FormError(f"{order!r}: '=' goes between two response numbers, as in 31=42.")
            tie_next = True
            continue
        if not ch.isdigit() or not 1 <= int(ch) <= len(ids):
            raise FormError(f"{order!r}: {ch!r} is not a response number; type numbers 1 to {len(ids)}, best first.")
        if tie_next:
            groups[-1].append(int(ch))
        else:
            groups.append([int(ch)])
        tie_next = False
    if tie_next:
        raise FormError(f"{order!r} ends with '='; type the response it ties with, or remove the '='.")
    numbers = [n for group in groups for n in group]
    repeated = sorted({n for n in numbers if numbers.count(n) > 1})
    missing = [n for n in range(1, len(ids) + 1) if n not in numbers]
    if repeated or missing:
        problems = ([f"{', '.join(map(str, repeated))} more than once"] if repeated else []) + (
            [f"not {', '.join(map(str, missing))}"] if missing else []
        )
        raise FormError(f"{order!r} places {' and '.join(problems)}; place each of 1 to {len(ids)} once, best first.")
    return [[ids[n - 1] for n in group] for group in groups]


def order_from_ranking(ranking: list[list[int]], ids: list[int]) -> str:
    """The inverse, to prefill a correction: [[ids[2]], [ids[0], ids[3]], [ids[1]]] -> "31=42"."""
    number = {rid: index for index, rid in enumerate(ids, 1)}
    return "".join(TIE.join(str(number[rid]) for rid in group) for group in ranking)


def places(ranking: list[list[int]]) -> dict[int, int]:
    """The inverse: response id -> its place, 1 = best; tied responses share a place (1, 2, 2, 4)."""
    result: dict[int, int] = {}
    place = 1
    for group in ranking:
        for rid in group:
            result[rid] = place
        place += len(group)
    return result


# --------------------------------------------------------------------------------------------------------
# Labels page: inter-annotator agreement over the exported rankings


@dataclass(frozen=True)
class Agreement:
    """How often two annotators who ranked the same responses order a pair of them the same way."""

    items: int  # prompts (with the same responses) ranked by two or more annotators
    comparisons: int  # annotator pair x response pair judgments compared
    agreement: float | None  # fraction of comparisons where both said the same (above, tie, below); None if none
    alpha: float | None  # Krippendorff's alpha (ordinal) of the same judgments: 1 perfect, 0 chance level
    by_pair: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)  # (a, b) -> (n, agreement)


def _relations(record: dict[str, Any]) -> dict[tuple[str, str], int]:
    """(text a, text b) with a < b -> 1 when a is ranked above b, -1 below, 0 tied."""
    responses = record["responses"]
    place: dict[str, int] = {}
    for rank, entry in enumerate(record["ranking"]):
        for index in entry if isinstance(entry, list) else [entry]:
            place[responses[index]] = rank
    return {(a, b): (place[b] > place[a]) - (place[b] < place[a]) for a, b in itertools.combinations(sorted(place), 2)}


def agreement(records: Iterable[dict[str, Any]]) -> Agreement:
    """Agreement between annotators over rankings in the rankings data contract (the store's export).

    Two records are the same item when they rank the same responses to the same prompt. For every pair of
    responses of an item, each annotator says a above b, tie, or b above a: the raw agreement is how often two
    annotators say the same; Krippendorff's alpha (ordinal: a tie lies between the two orders) corrects it for
    chance. An annotator's latest record of an item counts."""
    from alignops.evaluation.human import krippendorff_alpha

    items: dict[tuple[str, tuple[str, ...]], dict[str, dict]] = defaultdict(dict)
    for record in records:
        items[(record["prompt"], tuple(sorted(record["responses"])))][record["annotator"]] = record
    units: list[dict[str, float]] = []
    by_pair: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    overlapping = 0
    for by_annotator in items.values():
        if len(by_annotator) < 2:
            continue
        overlapping += 1
        relations = {name: _relations(record) for name, record in by_annotator.items()}
        for pair in next(iter(relations.values())):
            units.append({name: float(said[pair]) for name, said in relations.items() if pair in said})
        for a, b in itertools.combinations(sorted(relations), 2):
            for pair, said in relations[a].items():
                if pair in relations[b]:
                    by_pair[(a, b)][0] += 1
                    by_pair[(a, b)][1] += int(said == relations[b][pair])
    compared = sum(n for n, _ in by_pair.values())
    if compared == 0:
        return Agreement(overlapping, 0, None, None)
    same = sum(agreed for _, agreed in by_pair.values())
    pairs = {pair: (n, agreed / n) for pair, (n, agreed) in sorted(by_pair.items())}
    return Agreement(overlapping, compared, same / compared, krippendorff_alpha(units, "ordinal"), pairs)


# --------------------------------------------------------------------------------------------------------
# Runs page: config diff and metric curves


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values (compared whole)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


_MISSING = object()


def _shown(value: Any) -> str:
    if value is _MISSING:
        return "(absent)"
    return json.dumps(value) if isinstance(value, list | dict | bool) or value is None else str(value)


def config_diff(configs: Mapping[str, Mapping[str, Any]]) -> list[dict[str, str]]:
    """The keys whose values differ between the configs (label -> nested config), one row per key:
    {"key": "sft.lr", "<label a>": "0.001", "<label b>": "0.0003"}; a key one config lacks shows '(absent)'."""
    flat = {label: flatten(config) for label, config in configs.items()}
    keys = sorted(set().union(*(f.keys() for f in flat.values()))) if flat else []
    rows = []
    for key in keys:
        values = {label: _shown(f.get(key, _MISSING)) for label, f in flat.items()}
        if len(set(values.values())) > 1:
            rows.append({"key": key, **values})
    return rows


# The metric columns the Runs table shows by default for each stage (all of them behind a toggle): what people
# read first for that stage, in that order.
STAGE_METRICS = {
    "pretrain": ["train/loss", "val/loss", "val/ppl"],
    "sft": ["train/loss", "val/loss", "val/ppl"],
    "reward": ["reward/accuracy", "reward/length_baseline_accuracy", "val/loss"],
    "ppo": ["ppo/reward", "ppo/kl", "ppo/reward_gain", "ppo/clipfrac"],
    "dpo": ["train/loss", "val/loss", "val/kl"],
    "evaluate": [
        "eval/win_rate_judge",
        "eval/reward",
        "eval/f1",
        "eval/ppl",
        "eval/f1_margin",
        "eval/ppl_margin",
        "eval/entity_f1_micro",
        "eval/entity_f1_margin_over_baseline",
    ],  # fmt: skip
    "ner": ["test/entity_f1_micro", "baseline/entity_f1_micro", "test/entity_f1_margin_over_baseline"],
    "data-validate": ["validation/success", "validation/failed_expectations"],
}
REWARD, KL = "ppo/reward", "ppo/kl"  # the RL trade-off: reward gained against distance from the reference


def metric_columns(stages: Iterable[str | None], available: Iterable[str]) -> list[str]:
    """The default metric columns for runs of these stages: each stage's STAGE_METRICS that some run has, in
    order, without repeats."""
    present = set(available)
    columns: list[str] = []
    for stage in stages:
        columns += [key for key in STAGE_METRICS.get(stage or "", []) if key in present and key not in columns]
    return columns


def trade_off_rows(histories: Mapping[str, tuple[list, list]]) -> list[dict[str, Any]]:
    """label -> (reward history, KL history), each [(step, timestamp ms, value)], to one row per step both were
    logged at: {"run", "step", "kl", "reward"}, for a reward-against-KL chart."""
    rows = []
    for label, (reward, kl) in histories.items():
        kl_at = {step: value for step, _, value in kl}
        rows.extend({"run": label, "step": step, "kl": kl_at[step], "reward": value}
                    for step, _, value in reward if step in kl_at)  # fmt: skip
    return rows


def metric_rows(histories: Mapping[str, list[tuple[int, int, float]]]) -> list[dict[str, Any]]:
    """Curves for one chart: label -> [(step, timestamp ms, value)] to long rows with the step, the seconds
    since that curve's first point (so runs started at different times overlay), and the value."""
    rows = []
    for label, points in histories.items():
        if not points:
            continue
        start = min(ts for _, ts, _ in points)
        rows.extend(
            {"run": label, "step": step, "seconds": (ts - start) / 1000.0, "value": value} for step, ts, value in points
        )
    return rows


# --------------------------------------------------------------------------------------------------------
# Generations page


def side_by_side(samples: Mapping[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """label -> that model version's samples.jsonl rows, to one row per sample every version wrote, in the
    first version's order: {"sample_id", "prompt", "outputs": {label: sample row}}."""
    if not samples:
        return []
    indexed = {label: {str(row["sample_id"]): row for row in rows} for label, rows in samples.items()}
    first = next(iter(samples.values()))
    rows = []
    for row in first:
        sid = str(row["sample_id"])
        if all(sid in by_id for by_id in indexed.values()):
            outputs = {k: v[sid] for k, v in indexed.items()}
            rows.append({"sample_id": sid, "prompt": row["prompt"], "lang": row.get("lang"),
                         "source": row.get("source"), "outputs": outputs})  # fmt: skip
    return rows


BASELINE_FIELDS = {"completion": "baseline_completion", "reward": "baseline_reward", "judge": "baseline_judge"}


def against_baseline(uri: str, samples: list[dict[str, Any]]) -> tuple[str | None, list[dict[str, Any]]]:
    """One evaluation's samples as side_by_side() rows of two columns, the model and the baseline it was
    compared with (each sample holds both answers): (the baseline's URI, rows). (None, []) without a baseline."""
    with_baseline = [row for row in samples if row.get("baseline_completion") is not None]
    if not with_baseline:
        return None, []
    baseline = str(with_baseline[0].get("baseline_uri") or "baseline")
    rows = []
    for row in with_baseline:
        theirs = {field: row.get(stored) for field, stored in BASELINE_FIELDS.items()}
        rows.append({"sample_id": str(row["sample_id"]), "prompt": row["prompt"], "lang": row.get("lang"),
                     "source": row.get("source"), "outputs": {uri: row, baseline: theirs}})  # fmt: skip
    return baseline, rows


def filter_rows(rows: list[dict[str, Any]], langs: Iterable[str] = (), sources: Iterable[str] = (), words: str = ""):
    """The rows of a prompt language and source among those picked (none picked: any), whose prompt holds
    `words` (case-insensitive)."""
    langs, sources, words = set(langs), set(sources), words.lower().strip()
    return [
        row for row in rows
        if (not langs or row.get("lang") in langs) and (not sources or row.get("source") in sources)
        and words in row["prompt"].lower()
    ]  # fmt: skip


def parse_jsonl(text: str) -> list[dict[str, Any]]:
    """JSON lines to records; a malformed line is an error naming its line number."""
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {number} is not JSON: {exc.msg}") from None
    return records


def to_jsonl(records: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


# --------------------------------------------------------------------------------------------------------
# Models page: where a version came from


def lineage(uri: str, parents: Mapping[str, str]) -> list[str]:
    """The chain of model versions `uri` was trained from, itself first: parents maps a version URI to the
    URI of the version it started from (its alignops.parent_model tag). Stops at an unknown parent or a loop."""
    chain = [uri]
    while (parent := parents.get(chain[-1])) and parent != "none" and parent not in chain:
        chain.append(parent)
    return chain


def metric_deltas(left: Mapping[str, float], right: Mapping[str, float]) -> list[dict[str, Any]]:
    """One row per metric either side has: both values and right - left (None where one side lacks it)."""
    rows = []
    for key in sorted(set(left) | set(right)):
        a, b = left.get(key), right.get(key)
        rows.append(
            {"metric": key, "left": a, "right": b, "change": b - a if a is not None and b is not None else None}
        )
    return rows


# --------------------------------------------------------------------------------------------------------
# Models and Runs pages: each neural figure beside the classic baseline it must beat


@dataclass(frozen=True)
class BaselinePair:
    """A model's figure, its baseline's figure on the same examples, and the logged margin (> 0: the model wins)."""

    figure: str
    baseline: str
    margin: str
    higher_is_better: bool  # how the margin is computed when it was not logged


# What the evaluate stage (alignops.evaluation.baselines) and the ner stage / evaluate on a tagger
# (alignops.evaluation.ner.report, prefix "test" or "eval") log beside each model figure.
BASELINE_PAIRS = (
    BaselinePair("eval/ppl", "eval/ppl_trigram", "eval/ppl_margin", higher_is_better=False),
    BaselinePair("eval/f1", "eval/f1_bow", "eval/f1_margin", higher_is_better=True),
    *(
        BaselinePair(
            f"{prefix}/entity_f1_micro",
            "baseline/entity_f1_micro",
            f"{prefix}/entity_f1_margin_over_baseline",
            higher_is_better=True,
        )  # fmt: skip
        for prefix in ("eval", "test")
    ),
)


def baseline_margins(metrics: Mapping[str, float]) -> list[dict[str, Any]]:
    """One row per figure that has its baseline in metrics: {"figure", "model", "baseline", "baseline value",
    "margin", "beats baseline"}. The margin is the logged one, else computed so that > 0 means the model wins
    (perplexity: the baseline's minus the model's; F1: the model's minus the baseline's)."""
    rows = []
    for pair in BASELINE_PAIRS:
        if pair.figure not in metrics or pair.baseline not in metrics:
            continue
        model, baseline = metrics[pair.figure], metrics[pair.baseline]
        margin = metrics.get(pair.margin, model - baseline if pair.higher_is_better else baseline - model)
        rows.append({"figure": pair.figure, "model": model, "baseline": pair.baseline, "baseline value": baseline,
                     "margin": margin, "beats baseline": margin > 0})  # fmt: skip
    return rows


def inline_image(png: bytes, caption: str) -> str:
    """A PNG as an HTML figure that carries its own bytes (a data: URL): nothing is left under Streamlit's
    /media/ route, which answers anyone who knows the address, signed in or not."""
    import base64
    import html

    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}" style="max-width:100%">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")  # fmt: skip


def safe_markdown(text: str) -> str:
    """Model text for st.markdown: its Markdown (emphasis, lists, code) renders, but nothing that reaches out or
    runs: raw HTML shows as text (every < escaped), and links, bare URLs and images show as their text (every [
    and :// escaped), so no request goes to a URL in a model's answer and no link invites a click."""
    return str(text).replace("<", "\\<").replace("[", "\\[").replace("://", "\\://")  # no bare-URL autolinks


def md_escape(text: str) -> str:
    """Text for a Markdown element, shown literally: no emphasis, links or images from data."""
    specials = "\\`*_{}[]()<>#+-.!|~$:"
    return "".join("\\" + ch if ch in specials else ch for ch in str(text))

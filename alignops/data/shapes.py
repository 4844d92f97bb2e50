"""The shapes a team's records come in (TRL / Hugging Face conventions): recognised from the first record,
every record checked by field, and each converted into a record of its data contract, cleaned as the build cleans.

Shapes (after --map renames): prompt/completion (or prompt/response) and conversational `messages` become sft
records (a chat keeps its turns; the chat template renders them at training time); prompt/chosen/rejected become
a two-response ranking; unpaired prompt/completion/label become one ranking per prompt, the completions labeled
true tied above those labeled false (derived: nobody compared them); text/label become classification; a
prompt alone becomes an eval prompt (or a record of any other prompt-only set); text alone becomes corpus.
A record may also carry `source`.

    shape = infer_shape(first_record, "sft", where)         # raises ImportRefused for an unknown shape
    errors = check_record(record, shape, where, labels)     # ["<file>:line 3: field 'prompt': missing", ...]
    record, key = convert_record(record, shape, "sft", source, cfg.data)   # (None, why) when dropped
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from alignops.config import DataConfig
from alignops.data import prepare
from alignops.data.formats import OPTIONAL_FIELDS, ImportRefused, Where

ROLES = ("system", "user", "assistant")
_TRUE = {"true", "1", "yes", "y", "t"}  # unpaired labels as CSV writes them
_FALSE = {"false", "0", "no", "n", "f"}


@dataclass(frozen=True)
class Shape:
    name: str
    fields: tuple[str, ...]  # exactly these (plus OPTIONAL_FIELDS)
    sets: tuple[str, ...]  # the contracts it can become; () = any prompt-only set
    example: str


SHAPES = (
    Shape("preference", ("prompt", "chosen", "rejected"), ("rankings",),
          '{"prompt": "...", "chosen": "...", "rejected": "..."}'),
    Shape("unpaired_preference", ("prompt", "completion", "label"), ("rankings",),
          '{"prompt": "...", "completion": "...", "label": true}'),
    Shape("prompt_completion", ("prompt", "completion"), ("sft",), '{"prompt": "...", "completion": "..."}'),
    Shape("prompt_response", ("prompt", "response"), ("sft",), '{"prompt": "...", "response": "..."}'),
    Shape("messages", ("messages",), ("sft",),
          '{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}'),
    Shape("text_label", ("text", "label"), ("classification",), '{"text": "...", "label": "positive"}'),
    Shape("prompt_only", ("prompt",), (), '{"prompt": "..."}'),
    Shape("text", ("text",), ("corpus",), '{"text": "..."}'),
)  # fmt: skip
_PROMPT_ONLY_SETS = ("eval_prompts", "rollout")  # the prompt-only contracts (rollout: once it exists)


# --------------------------------------------------------------------------- recognising and checking


def parse_mapping(text: str | None) -> dict[str, str]:
    """'prompt=question,response=answer' -> {"prompt": "question", "response": "answer"} (contract field = file's)."""
    mapping: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        target, sep, name = part.partition("=")
        if not sep or not target.strip() or not name.strip():
            raise ImportRefused(f"--map entry {part!r} is not FIELD=COLUMN (e.g. prompt=question).")
        mapping[target.strip()] = name.strip()
    return mapping


def rename_fields(record: dict, mapping: dict[str, str]) -> dict:
    """The record with each --map column renamed to its contract field; other fields as they are."""
    back = {name: target for target, name in mapping.items()}
    return {back.get(k, k): v for k, v in record.items()}


def _candidates(set_name: str | None) -> list[Shape]:
    if set_name is None:
        return list(SHAPES)
    return [s for s in SHAPES if set_name in s.sets or (not s.sets and set_name in _PROMPT_ONLY_SETS)]


def set_of(shape: Shape) -> str:
    """The set a shape becomes when --as is not given (a prompt alone: an eval prompt)."""
    return shape.sets[0] if shape.sets else _PROMPT_ONLY_SETS[0]


def infer_shape(first: dict, set_name: str | None, where: Where) -> Shape:
    """The shape whose fields the first record has most of; unknown (no shared field): refused with the shapes
    this set takes and the record itself."""
    candidates = _candidates(set_name) or [contract_shape(set_name)]  # a set no TRL shape becomes (NER)
    keys = set(first)
    best = max(candidates, key=lambda s: (len(keys & set(s.fields)), -len(s.fields)), default=None)
    if best is None or not keys & set(best.fields):
        known = "\n".join(f"    {s.name:<20} {s.example}  -> {', '.join(s.sets or _PROMPT_ONLY_SETS)}" for s in SHAPES)
        shown = json.dumps(first, ensure_ascii=False)
        target = f" for --as {set_name}" if set_name else ""
        raise ImportRefused(
            f"{where}: unknown shape{target}. The first record is:\n    {shown[:500]}\n"
            f"  Known shapes:\n{known}\n  Rename fields with --map (e.g. --map prompt=question,completion=answer)."
        )
    return best


def check_record(record: dict, shape: Shape, where: Where, labels: tuple[str, ...]) -> list[str]:
    """What is wrong with one record of this shape, each naming its field."""
    errors = [f"{where}: field '{f}': missing" for f in shape.fields if f not in record]
    extra = sorted(set(record) - set(shape.fields) - set(OPTIONAL_FIELDS))
    errors += [f"{where}: field '{f}': not part of the {shape.name} shape {shape.fields} (drop it or --map it)"
               for f in extra]  # fmt: skip
    if errors or shape.name.endswith("_contract"):
        return errors
    for name in shape.fields:
        value = record[name]
        if name == "messages":
            errors += _check_messages(value, where)
        elif name == "label" and shape.name == "unpaired_preference":
            if _bool_label(value) is None:
                errors.append(f"{where}: field 'label': {value!r} is not true/false")
        elif name == "label":
            if str(value) not in labels:
                errors.append(f"{where}: field 'label': {value!r} is not one of {list(labels)}")
        elif not isinstance(value, str) or not value.strip():
            errors.append(f"{where}: field '{name}': must be non-empty text, got {_shown(value)}")
    if "source" in record and not (isinstance(record["source"], str) and record["source"].strip()):
        errors.append(f"{where}: field 'source': must be non-empty text, got {_shown(record['source'])}")
    if shape.name == "preference" and not errors and record["chosen"].strip() == record["rejected"].strip():
        errors.append(f"{where}: field 'rejected': equals 'chosen'; a preference needs two different responses")
    return errors


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)[:80]


def _check_messages(messages: Any, where: Where) -> list[str]:
    """Turns in order: an optional system turn, then user and assistant alternating, ending with assistant."""
    if not isinstance(messages, list) or not messages:
        return [f"{where}: field 'messages': must be a non-empty list of {{role, content}}, got {_shown(messages)}"]
    errors = []
    expected = "user"
    for i, turn in enumerate(messages):
        at = f"{where}: field 'messages[{i}]'"
        if not isinstance(turn, dict) or set(turn) != {"role", "content"}:
            errors.append(f"{at}: must be exactly {{role, content}}, got {_shown(turn)}")
            continue
        role, content = turn["role"], turn["content"]
        if not isinstance(content, str) or not content.strip():
            errors.append(f"{at}.content: must be non-empty text")
        if role == "system" and i == 0:
            continue
        if role not in ROLES:
            errors.append(f"{at}.role: {role!r} is not one of {ROLES}")
        elif role != expected:
            errors.append(f"{at}.role: '{role}' out of order, expected '{expected}' (system first, then user and "
                          "assistant alternating)")  # fmt: skip
        expected = "assistant" if role == "user" else "user"
    if not errors and messages[-1]["role"] != "assistant":
        errors.append(f"{where}: field 'messages': the last turn must be the assistant's (the response to learn)")
    return errors


def _bool_label(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


# --------------------------------------------------------------------------- into the contracts


def convert_record(record: dict, shape: Shape, set_name: str, source: str, cfg: DataConfig) -> tuple[dict | None, str]:
    """(contract record, split key) or (None, why it was dropped), cleaned as the build cleans."""
    clean = prepare.clean_text
    src = record.get("source") or source
    if shape.name == "messages":
        turns = [{"role": m["role"], "content": clean(m["content"])} for m in record["messages"]]
        if not all(t["content"] for t in turns):
            return None, "a turn is empty after cleaning"
        prompt = next(t["content"] for t in reversed(turns) if t["role"] == "user")
        out = {"prompt": prompt, "response": turns[-1]["content"], "source": src, "derived": False, "messages": turns}
        return (out, prompt) if prepare.detect_lang(prompt + out["response"]) else (None, "language not en/zh")
    if shape.name in ("prompt_completion", "prompt_response"):
        prompt, response = clean(record["prompt"]), clean(record.get("completion", record.get("response", "")))
        if not prompt or not response:
            return None, "empty after cleaning"
        out = {"prompt": prompt, "response": response, "source": src, "derived": False}
        return (out, prompt) if prepare.detect_lang(prompt + response) else (None, "language not en/zh")
    if shape.name == "preference":
        prompt, chosen, rejected = clean(record["prompt"]), clean(record["chosen"]), clean(record["rejected"])
        if not prompt or not chosen or not rejected:
            return None, "empty after cleaning"
        if chosen == rejected:
            return None, "chosen equals rejected after cleaning"
        # the better response is not always first (as the build's label-derived rankings)
        flip = int(prepare.content_hash(chosen + rejected)[0], 16) % 2
        out = {"prompt": prompt, "responses": [rejected, chosen] if flip else [chosen, rejected],
               "ranking": [1, 0] if flip else [0, 1], "annotator": src, "source": src, "derived": False,
               "agreement": None}  # fmt: skip
        return out, prompt + "\x00" + "\x00".join(sorted(out["responses"]))
    if shape.name in ("text_label", "text"):
        text = clean(record["text"])
        lang = prepare.detect_lang(text)
        if len(text) < cfg.min_chars:
            return None, f"shorter than data.min_chars={cfg.min_chars} after cleaning"
        if lang is None:
            return None, "language not en/zh"
        out = {"text": text, "label": str(record["label"]), "source": src, "lang": lang}
        if shape.name == "text":
            out.pop("label")
        return out, text
    if shape.name.endswith("_contract"):
        out = {k: clean(v) if isinstance(v, str) else v for k, v in record.items()} | {"source": src}
        return out, json.dumps({k: out[k] for k in shape.fields}, ensure_ascii=False, sort_keys=True)
    prompt = clean(record["prompt"])  # prompt_only
    if not prompt:
        return None, "empty after cleaning"
    out = {"prompt": prompt, "source": src}
    if "lang" in _contract_columns(set_name):
        out["lang"] = prepare.detect_lang(prompt) or "en"
    if "task" in _contract_columns(set_name):  # an imported prompt is an open request, which the judges measure
        out["task"] = "answer"  # (labeled questions belong in the classification set, scored by F1)
    return out, prompt


def _contract_columns(set_name: str) -> tuple[str, ...]:
    from alignops.data.validation import CONTRACTS

    return tuple(CONTRACTS[set_name].columns)


def contract_shape(set_name: str) -> Shape:
    """A set with no TRL counterpart (NER, once its contract exists) is imported in its own contract's fields."""
    from alignops.data.validation import CONTRACTS

    contract = CONTRACTS[set_name]
    fields = tuple(c for c in contract.columns if c not in OPTIONAL_FIELDS and c not in contract.optional)
    return Shape(f"{set_name}_contract", fields, (set_name,), json.dumps(dict.fromkeys(fields, "...")))


def rank_unpaired(rows: list[tuple[dict, str]], dropped: Counter) -> list[tuple[dict, str]]:
    """Unpaired labels to one ranking per prompt: the completions labeled true tied above those labeled false."""
    by_prompt: dict[tuple[str, str], list[tuple[str, bool]]] = defaultdict(list)
    for record, src in rows:
        completion = prepare.clean_text(record["completion"])
        prompt = prepare.clean_text(record["prompt"])
        if not prompt or not completion:
            dropped["empty after cleaning"] += 1
            continue
        by_prompt[(prompt, src)].append((completion, bool(_bool_label(record["label"]))))
    out = []
    for (prompt, src), labeled in by_prompt.items():
        good = list(dict.fromkeys(c for c, ok in labeled if ok))
        bad = [c for c in dict.fromkeys(c for c, ok in labeled if not ok) if c not in good]
        if not good or not bad:
            dropped["unpaired: the prompt has no completion of the other label"] += len(labeled)
            continue
        responses = good + bad
        tier = lambda idx: idx[0] if len(idx) == 1 else idx  # noqa: E731
        ranking = [tier(list(range(len(good)))), tier(list(range(len(good), len(responses))))]
        record = {"prompt": prompt, "responses": responses, "ranking": ranking, "annotator": src, "source": src,
                  "derived": True, "agreement": None}  # fmt: skip
        out.append((record, prompt + "\x00" + "\x00".join(sorted(responses))))
    return out

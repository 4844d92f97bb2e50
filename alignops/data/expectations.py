"""The Great Expectations suite of one split, built from its set's data contract and the bounds: schema, types,
lengths, allowed values, ranges, the duplicate rate, leaks into train splits, and the rules GX has no built-in for
(a ranking is a permutation of its responses, one BIO tag per character) as named helper columns checked with
ordinary expectations, so every rule reads the same way in the report and the data docs.

    expectations, helpers = build_expectations(split, "rankings", CONTRACTS["rankings"], bounds, references)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from alignops.data.contracts import SetContract, ValidationBounds, held_out_values, leaks_of

if TYPE_CHECKING:  # pandas/GX are imported lazily: importing GX costs seconds
    import pandas as pd

    from alignops.data.suites import LoadedSplit


def _flatten_ranking(ranking: Any) -> list[Any] | None:
    """Flatten a best-first ranking of indices / tie groups; None if malformed."""
    if not isinstance(ranking, list):
        return None
    flat: list[Any] = []
    for item in ranking:
        group = item if isinstance(item, list) else [item]
        if not group:  # an empty tie group is malformed
            return None
        flat.extend(group)
    return flat


def _is_permutation(ranking: list[Any], responses: list[Any]) -> bool:
    flat = _flatten_ranking(ranking)
    if flat is None:
        return False
    # bool is an int subclass; True is not a response index.
    if any(isinstance(i, bool) or not isinstance(i, int) for i in flat):
        return False
    return sorted(flat) == list(range(len(responses)))


def _ranking_helpers(
    frame: pd.DataFrame, bounds: ValidationBounds
) -> list[tuple[str, tuple[str, ...], list[Any], Any]]:
    """Helper columns for list-valued ranking rules: (name, sources, values, expectation).

    A helper is None where its source is not a list: GX map expectations skip nulls, and
    the type expectation on the source column already names that row.
    """
    import great_expectations.expectations as gxe

    responses = list(frame["responses"]) if "responses" in frame else None
    ranking = list(frame["ranking"]) if "ranking" in frame else None
    helpers: list[tuple[str, tuple[str, ...], list[Any], Any]] = []
    if responses is not None:
        lists = [r if isinstance(r, list) else None for r in responses]
        strs = [[s for s in r if isinstance(s, str)] if r is not None else [] for r in lists]
        lo, hi = bounds.chars("response")
        helpers += [
            (
                "num_responses",
                ("responses",),
                [len(r) if r is not None else None for r in lists],
                gxe.ExpectColumnValuesToBeBetween(
                    column="num_responses",
                    min_value=bounds.min_responses,
                    description=f"a ranking compares at least {bounds.min_responses} responses",
                ),
            ),
            (
                "responses_are_nonblank_strings",
                ("responses",),
                [None if r is None else all(isinstance(s, str) and s.strip() for s in r) for r in lists],
                gxe.ExpectColumnValuesToBeInSet(
                    column="responses_are_nonblank_strings",
                    value_set=[True],
                    description="every response is a string with a non-whitespace character",
                ),
            ),
            (
                "shortest_response_chars",
                ("responses",),
                [min(map(len, s)) if s else None for s in strs],
                gxe.ExpectColumnValuesToBeBetween(
                    column="shortest_response_chars",
                    min_value=lo,
                    description=f"every response has at least {lo} characters",
                ),
            ),
            (
                "longest_response_chars",
                ("responses",),
                [max(map(len, s)) if s else None for s in strs],
                gxe.ExpectColumnValuesToBeBetween(
                    column="longest_response_chars",
                    max_value=hi,
                    description=f"every response has at most {hi} characters",
                ),
            ),
            (
                "responses_distinct",
                ("responses",),
                # chosen != rejected: a ranking between identical responses teaches nothing
                [None if r is None else len({json.dumps(s) for s in r}) == len(r) for r in lists],
                gxe.ExpectColumnValuesToBeInSet(
                    column="responses_distinct",
                    value_set=[True],
                    description="no two responses of a ranking are identical",
                ),
            ),
        ]
    if responses is not None and ranking is not None:
        helpers.append(
            (
                "ranking_is_permutation",
                ("ranking", "responses"),
                [
                    _is_permutation(rk, rs) if isinstance(rk, list) and isinstance(rs, list) else None
                    for rk, rs in zip(ranking, responses, strict=True)
                ],
                gxe.ExpectColumnValuesToBeInSet(
                    column="ranking_is_permutation",
                    value_set=[True],
                    description="ranking (indices and tie groups, flattened) is a permutation of range(len(responses))",
                ),
            )
        )
    if responses is not None and "ratings" in frame:  # optional: label-derived and dashboard rankings have none
        helpers.append(
            (
                "ratings_per_response",
                ("ratings", "responses"),
                [
                    _ratings_fit(rt, rs) if isinstance(rs, list) and isinstance(rt, list) else None
                    for rt, rs in zip(frame["ratings"], responses, strict=True)
                ],
                gxe.ExpectColumnValuesToBeInSet(
                    column="ratings_per_response",
                    value_set=[True],
                    description="ratings hold one non-empty list of numbers per response, in the responses' order",
                ),
            )
        )
    return helpers


def _ratings_fit(ratings: list[Any], responses: list[Any]) -> bool:
    """One non-empty list of numbers (never bools) per response."""
    return len(ratings) == len(responses) and all(
        isinstance(r, list) and r and all(isinstance(x, int | float) and not isinstance(x, bool) for x in r)
        for r in ratings
    )


def _bio_helpers(frame: pd.DataFrame) -> list[tuple[str, tuple[str, ...], list[Any], Any]]:
    """One helper column naming what is wrong with each record's tags (alignops.data.ner.bio_problems): one tag
    per character, every tag from the label set, every I-X continuing an X entity. "ok" when nothing is."""
    import great_expectations.expectations as gxe

    from alignops.data.ner import TAGS, bio_problems

    if "tags" not in frame or "text" not in frame:
        return []
    values = [
        ("; ".join(bio_problems(text, tags)) or "ok") if isinstance(text, str) and isinstance(tags, list) else None
        for text, tags in zip(frame["text"], frame["tags"], strict=True)
    ]
    expectation = gxe.ExpectColumnValuesToBeInSet(
        column="tag_problems",
        value_set=["ok"],
        description=f"one tag per character, each from {list(TAGS)}, every I-X continuing a B-X or I-X",
    )
    return [("tag_problems", ("text", "tags"), values, expectation)]


def _duplicate_key(frame: pd.DataFrame, key: tuple[str, ...]) -> list[str]:
    """One hashable string per row for a multi-column duplicate key."""
    columns = [list(frame[c]) for c in key]
    return [json.dumps(values, ensure_ascii=False, default=str) for values in zip(*columns, strict=True)]


def build_expectations(
    split: LoadedSplit,
    set_name: str,
    contract: SetContract,
    bounds: ValidationBounds,
    references: Mapping[tuple[str, str], frozenset[str]],  # (column, 'set/split') -> its train values
) -> tuple[list[Any], dict[str, tuple[str, ...]]]:
    """GX expectations for one split; adds helper columns to ``split.frame`` in place.

    Returns the expectations and helper column -> source columns (for reports).
    Column-level expectations of a column absent from the file are skipped: they would
    only repeat the schema failure as "column not found" errors.
    """
    import great_expectations.expectations as gxe

    frame = split.frame
    assert frame is not None
    present = set(frame.columns)
    split_name = split.dataset.split("/", 1)[1]
    exps: list[Any] = [
        gxe.ExpectTableRowCountToBeBetween(
            min_value=bounds.min_rows, description=f"at least {bounds.min_rows} record(s)"
        )
    ]
    for col, type_ in contract.columns.items():
        if col not in present:
            continue
        if col not in contract.nullable:
            exps.append(gxe.ExpectColumnValuesToNotBeNull(column=col, description=f"{col} is present"))
        if isinstance(type_, tuple):
            exps.append(
                gxe.ExpectColumnValuesToBeInTypeList(
                    column=col, type_list=list(type_), description=f"{col} is one of {type_}"
                )
            )
        else:
            exps.append(gxe.ExpectColumnValuesToBeOfType(column=col, type_=type_, description=f"{col} is {type_}"))
        if type_ == "str" and col not in contract.allowed:
            exps.append(
                gxe.ExpectColumnValuesToMatchRegex(
                    column=col, regex=r"\S", description=f"{col} is not empty or whitespace-only"
                )
            )
    for col, kind in contract.lengths.items():
        if col in present:
            lo, hi = bounds.chars(kind)
            exps.append(
                gxe.ExpectColumnValueLengthsToBeBetween(
                    column=col, min_value=lo, max_value=hi, description=f"{col} has {lo}..{hi} characters"
                )
            )
    for col, attr in contract.allowed.items():
        if col in present:
            allowed = list(getattr(bounds, attr))
            exps.append(
                gxe.ExpectColumnValuesToBeInSet(column=col, value_set=allowed, description=f"{col} is one of {allowed}")
            )
    for col, (lo_v, hi_v) in contract.ranges.items():
        if col in present:
            exps.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column=col, min_value=lo_v, max_value=hi_v, description=f"{col} is in [{lo_v}, {hi_v}]"
                )
            )

    # Helper columns (added after the schema columns were read off the file).
    helpers: dict[str, tuple[str, ...]] = {}

    def add_helper(name: str, sources: tuple[str, ...], values: list[Any]) -> None:
        import pandas as pd

        frame[name] = pd.Series(values, index=frame.index, dtype=object)
        helpers[name] = sources

    if contract.rankings:
        for name, sources, values, exp in _ranking_helpers(frame, bounds):
            add_helper(name, sources, values)
            exps.append(exp)

    if contract.bio_tags:
        for name, sources, values, exp in _bio_helpers(frame):
            add_helper(name, sources, values)
            exps.append(exp)

    # An empty split already fails the row count; rates over zero rows mean nothing.
    key = contract.duplicate_key if len(frame) else ()
    if key and all(c in present for c in key):
        key_col = key[0]
        if len(key) > 1:
            key_col = "_".join(key)
            add_helper(key_col, key, _duplicate_key(frame, key))
        rate = bounds.max_duplicate_rate
        exps.append(
            gxe.ExpectColumnProportionOfUniqueValuesToBeBetween(
                column=key_col,
                min_value=1.0 - rate,
                description=f"at most {rate:.1%} duplicate records by ({', '.join(key)})",
            )
        )

    for leak in leaks_of(set_name):
        ref = references.get((leak.column, leak.reference))
        # A missing reference split is reported on its own; nothing to compare against.
        if split_name not in leak.splits or ref is None or leak.column not in present or not len(frame):
            continue
        # A helper flag rather than ExpectColumnValuesToNotBeInSet(value_set=<train values>):
        # a 54k-value set costs ~8 s per run in GX and bloats data docs to ~30 MB.
        leaked = [any(v in ref for v in held_out_values(cell)) for cell in frame[leak.column]]
        add_helper(leak.helper, (leak.column,), leaked)
        exps.append(
            gxe.ExpectColumnValuesToNotBeInSet(
                column=leak.helper,
                value_set=[True],
                description=f"{leak.column} does not occur in {leak.reference} (cross-split leakage)",
            )
        )

    # Schema last: it must list the helper columns that now live in the frame.
    expected = [c for c in contract.columns if c not in contract.optional or c in present] + list(helpers)
    exps.insert(
        0,
        gxe.ExpectTableColumnsToMatchSet(
            column_set=expected,
            exact_match=True,
            description=f"{set_name} records have exactly the fields {list(contract.columns)}",
        ),
    )
    return exps, helpers

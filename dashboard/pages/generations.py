"""Generations (admins): the completions two or more model versions wrote for the same eval prompts, side by
side, as the evaluate stage saved them (samples.jsonl). Nothing is generated here.

Admins only: the samples name their model versions, and they are the very responses labelers rank blind."""

from __future__ import annotations

import math

import streamlit as st

from dashboard import logic, services, session

session.require_admin()
st.title("Generations")

evaluated = {v.uri: v for v in services.versions() if services.evaluation(v) is not None}
if len(evaluated) < 2:
    st.info(
        "Side by side needs two evaluated model versions; "
        f"{len(evaluated)} found. Evaluate one: alignops evaluate --model models:/<name>/<version>"
    )
    st.stop()


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def describe(uri: str) -> str:
    aliases = evaluated[uri].aliases
    return f"{uri} ({', '.join(aliases)})" if aliases else uri


by_alias = {alias: uri for uri, v in evaluated.items() for alias in v.aliases}
default = [by_alias[a] for a in ("champion", "challenger") if a in by_alias]
default += [uri for uri in evaluated if uri not in default][: max(0, 2 - len(default))]  # newest of the rest
chosen = st.multiselect("Model versions", list(evaluated), default=default, format_func=describe)
if len(chosen) < 2:
    st.caption("Pick two or more versions.")
    st.stop()

rows = logic.side_by_side({uri: services.samples(evaluated[uri]) for uri in chosen})
query = st.text_input("Filter prompts", placeholder="words in the prompt")
if query:
    rows = [row for row in rows if query.lower() in row["prompt"].lower()]
if not rows:
    st.info("These versions have no eval prompt in common (or none matches the filter).")
    st.stop()

PER_PAGE = 10
pages = math.ceil(len(rows) / PER_PAGE)
page = st.number_input(f"Page (of {pages}; {len(rows)} prompts)", min_value=1, max_value=pages, value=1, step=1)
for row in rows[(page - 1) * PER_PAGE : page * PER_PAGE]:
    with st.container(border=True):
        st.text(f"Prompt {row['sample_id']}")
        st.code(row["prompt"], language=None, wrap_lines=True)
        for column, uri in zip(st.columns(len(chosen)), chosen, strict=True):
            sample = row["outputs"][uri]
            with column:
                st.text(describe(uri))
                st.code(sample.get("completion", ""), language=None, wrap_lines=True)
                scores = {
                    k: sample[k] for k in ("reward", "judge_score", "judge") if isinstance(sample.get(k), int | float)
                }
                if scores:
                    st.text("  ".join(f"{k} {v:.3g}" for k, v in scores.items()))

"""Generations (admins): what models wrote for the eval prompts, as the evaluate stage saved them
(samples.jsonl): one evaluation's model against its baseline (each sample holds both answers), or two or more
evaluated versions side by side; filtered by prompt language, source and words. Nothing is generated here.

Admins only: the samples name their model versions, and they are the very responses labelers rank blind."""

from __future__ import annotations

import math

import streamlit as st

from dashboard import logic, services, session

session.require_admin()
st.title("Generations")

evaluated = {v.uri: v for v in services.versions() if services.evaluation(v) is not None}
if not evaluated:
    st.info("No evaluated model version yet. Evaluate one: alignops evaluate --model models:/<name>/<version>")
    st.stop()


def describe(uri: str) -> str:
    aliases = evaluated[uri].aliases if uri in evaluated else []
    return f"{uri} ({', '.join(aliases)})" if aliases else uri


by_alias = {alias: uri for uri, v in evaluated.items() for alias in v.aliases}
AGAINST_BASELINE, VERSIONS = "One evaluation: model against its baseline", "Evaluated versions side by side"
mode = st.radio("Compare", [AGAINST_BASELINE, VERSIONS], horizontal=True)
if mode == AGAINST_BASELINE:
    uris = list(evaluated)
    start = by_alias.get("challenger", by_alias.get("champion", uris[0]))
    uri = st.selectbox("Model version", uris, index=uris.index(start), format_func=describe)
    baseline, rows = logic.against_baseline(uri, services.samples(evaluated[uri]))
    if baseline is None:
        st.info(f"The evaluation of {uri} had no baseline; compare evaluated versions side by side instead.")
        st.stop()
    chosen = [uri, baseline]
else:
    default = [by_alias[a] for a in ("champion", "challenger") if a in by_alias]
    default += [uri for uri in evaluated if uri not in default][: max(0, 2 - len(default))]  # newest of the rest
    chosen = st.multiselect("Model versions", list(evaluated), default=default, format_func=describe)
    if len(chosen) < 2:
        st.caption("Pick two or more evaluated versions (or compare one evaluation's model with its baseline).")
        st.stop()
    rows = logic.side_by_side({uri: services.samples(evaluated[uri]) for uri in chosen})

left, middle, right = st.columns(3)
langs = left.multiselect("Language", sorted({str(r["lang"]) for r in rows if r.get("lang")}))
sources = middle.multiselect("Source", sorted({str(r["source"]) for r in rows if r.get("source")}))
query = right.text_input("Filter prompts", placeholder="words in the prompt")
rows = logic.filter_rows(rows, langs, sources, query)
if not rows:
    st.info("No eval prompt in common (or none matches the filters).")
    st.stop()

PER_PAGE = 10
pages = math.ceil(len(rows) / PER_PAGE)
page = st.number_input(f"Page (of {pages}; {len(rows)} prompts)", min_value=1, max_value=pages, value=1, step=1)
for row in rows[(page - 1) * PER_PAGE : page * PER_PAGE]:
    with st.container(border=True):
        st.text(f"Prompt {row['sample_id']}" + "".join(f"  {row[k]}" for k in ("lang", "source") if row.get(k)))
        st.code(row["prompt"], language=None, wrap_lines=True)
        for column, uri in zip(st.columns(len(chosen)), chosen, strict=True):
            sample = row["outputs"][uri]
            with column:
                st.text(describe(uri))
                st.code(sample.get("completion") or "", language=None, wrap_lines=True)
                scores = {
                    k: sample[k] for k in ("reward", "judge_score", "judge") if isinstance(sample.get(k), int | float)
                }
                if scores:
                    st.text("  ".join(f"{k} {v:.3g}" for k, v in scores.items()))

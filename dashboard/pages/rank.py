"""Rank (everyone signed in): one prompt and up to K responses from different model versions, shuffled and
blind, to put in order best to worst (ties allowed) or skip, with a reason. Which model wrote which response
is shown only after the submit. The store picks the prompt: fewest rankings first and, with "Least certain
first" (on when the evaluations scored the responses with a reward model), among those the prompts where the
reward model's scores of the answers are closest, where a person's ranking teaches the next reward model most.

Keyboard: every response has a number box (its place, 1 = best); Tab moves on, Enter submits the form. Each
task carries its own client token, so a double submit stores one ranking."""

from __future__ import annotations

import string
import uuid
from pathlib import Path

import streamlit as st

from alignops.feedback.store import StoreError
from dashboard import logic, services, session

K = 4  # responses per task

user = session.require_user()
store = services.store()
state = st.session_state
st.title("Rank responses")
with st.expander("Guidelines"):
    st.markdown((Path(__file__).parents[1] / "guidelines.md").read_text(encoding="utf-8"))


def progress() -> None:
    mine = store.progress(user["id"])
    st.caption(
        f"Ranked {mine['rankings']} and skipped {mine['skipped']} in all, {state.rank_done} in this session; "
        f"{mine['open_tasks']} prompts left for you."
    )


def letter(index: int) -> str:
    return string.ascii_uppercase[index]


def next_task() -> None:
    state.rank_result = None
    state.rank_task = None


scored = store.has_rewards()
least_certain = st.toggle(
    "Least certain first",
    value=scored,
    disabled=not scored,
    key="rank_least_certain",
    help="Among the prompts with the fewest rankings, offer first those where the reward model scored the "
    "answers closest (it cannot tell them apart). Applies from the next prompt. Off while no evaluation has "
    "scored the responses.",
)

# ---- after a submit: reveal the model versions, then move on
if state.rank_result is not None:
    result = state.rank_result
    progress()
    st.success("Skipped." if result["skipped"] else f"Saved ranking #{result['id']}.")
    st.text("Prompt")
    st.code(result["prompt"], language=None, wrap_lines=True)
    for index, response in enumerate(result["responses"]):
        place = result["places"].get(response["id"])
        st.text(f"{letter(index)}  place {place if place else '-'}  written by {result['models'][response['id']]}")
    st.button("Next prompt", type="primary", on_click=next_task)
    st.stop()

# ---- a task to rank: the one on screen, or the next the store picks (fewest labels first)
if state.rank_task is None:
    task = store.next_task(user["id"], k=K, prefer_uncertain=least_certain)
    if task is None:
        progress()
        st.info("Nothing left to rank for you. Thank you! New prompts arrive with the next evaluated model.")
        st.stop()
    state.rank_task = {"task": task, "token": uuid.uuid4().hex}
task, token = state.rank_task["task"], state.rank_task["token"]
progress()

st.text("Prompt")
st.code(task.prompt, language=None, wrap_lines=True)
with st.form(f"rank-{token}"):
    positions = {}
    for index, response in enumerate(task.responses):
        with st.container(border=True):
            st.text(f"Response {letter(index)}")
            st.text(response.text)  # plain text, not a code block: Tab goes from place box to place box
            positions[response.id] = st.number_input(
                f"Place of {letter(index)} (1 = best; equal numbers tie)",
                min_value=1,
                max_value=len(task.responses),
                value=None,
                step=1,
                key=f"place-{token}-{index}",
            )
    reason = st.text_input("Reason (optional; say why when you skip)", max_chars=2000, key=f"reason-{token}")
    submitted = st.form_submit_button("Submit ranking", type="primary")  # Enter in any box presses this one
    skipped = st.form_submit_button("Skip this prompt")

if submitted or skipped:
    try:
        ranking = [] if skipped else logic.ranking_from_positions(positions)
        shown = [r.id for r in task.responses]
        ranking_id = store.submit_ranking(
            user["id"], task.prompt_id, ranking, client_token=token, reason=reason, skipped=skipped, shown=shown
        )
    except (logic.FormError, StoreError) as exc:
        st.error(logic.md_escape(str(exc)))  # messages quote what was typed: shown literally
    else:
        state.rank_done += 1
        state.rank_result = {
            "id": ranking_id,
            "skipped": skipped,
            "prompt": task.prompt,
            "responses": [{"id": r.id, "text": r.text} for r in task.responses],
            "places": logic.places(ranking),
            "models": store.response_models(shown),  # the store's answer, asked only now
        }
        st.rerun()

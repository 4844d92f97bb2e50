"""Rank (everyone signed in): one prompt and up to K responses from different model versions, side by side,
shuffled and blind, to put in order best to worst (ties allowed) or skip, with a reason. Which model wrote
which response is shown only after the submit, above the next prompt. The store picks the prompt: first the
prompts others started, until each has reached the overlap (so agreement can be computed), then the fewest
rankings and, with "Least certain first" (on when the evaluations scored the responses with a reward model),
the prompts where the reward model's scores of the answers are closest.

Keyboard: the cursor starts in the Order box; type the response numbers best first ("3142"; "=" ties two,
"31=42") and press Enter: the ranking is stored and the next prompt is on screen, in one round trip. A task
that went stale (ranked in another tab, or removed) is dropped with a message and the next one loads. Under
"Your recent rankings" a labeler changes an earlier ranking (stored as a new row that supersedes it). Each
task carries its own client token, so a double submit stores one ranking."""

from __future__ import annotations

import uuid
from pathlib import Path

import streamlit as st

from alignops.feedback.store import StaleTask, StoreError
from dashboard import browser, logic, services, session

K = 4  # responses per task
ORDER = "Order"  # the label of the box the cursor starts in
STALE = "That prompt was already ranked (in another tab?) or is gone; here is the next one."

user = session.require_user()
store = services.store()
state = st.session_state
st.title("Rank responses")
with st.expander("Guidelines"):
    st.markdown((Path(__file__).parents[1] / "guidelines.md").read_text(encoding="utf-8"))


def show(task, supersedes: int | None = None, order: str = "") -> None:
    """Put a task on screen (a new one, or an earlier ranking to change), with a fresh client token."""
    token = uuid.uuid4().hex
    state.rank_task = {"task": task, "token": token, "supersedes": supersedes}
    state[f"order-{token}"] = order


def submit(skipped: bool) -> None:
    """The form's buttons (and Enter): store the ranking or skip, then clear the task so this same run shows
    the next one. Runs before the page, with what the form sent in session state."""
    current = state.rank_task
    if current is None:
        return
    task, token = current["task"], current["token"]
    shown = [r.id for r in task.responses]
    try:
        ranking = [] if skipped else logic.ranking_from_order(state.get(f"order-{token}", ""), shown)
        ranking_id = store.submit_ranking(
            user["id"], task.prompt_id, ranking, client_token=token, reason=state.get(f"reason-{token}", ""),
            skipped=skipped, shown=shown, supersedes=current["supersedes"],
        )  # fmt: skip
    except StaleTask:
        state.rank_task, state.rank_notice = None, ("info", STALE)
        return
    except (logic.FormError, StoreError) as exc:
        state.rank_notice = ("error", str(exc))  # the task stays, with what was typed
        return
    state.rank_done += 1
    state.rank_task, state.rank_notice = None, None
    state.rank_last = {
        "id": ranking_id,
        "skipped": skipped,
        "corrected": current["supersedes"],
        "places": logic.places(ranking),
        "models": store.response_models(shown),  # the store's answer, asked only now
    }


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

# ---- what the last action did: the model versions of the last submit, or why the task changed
if state.rank_notice is not None:
    kind, message = state.rank_notice
    (st.error if kind == "error" else st.info)(logic.md_escape(message))  # messages quote what was typed
if state.rank_last is not None:
    last = state.rank_last
    saved = "Skipped." if last["skipped"] else f"Saved ranking #{last['id']}."
    st.success(f"{saved} Corrected #{last['corrected']}." if last["corrected"] else saved)
    for number, (rid, model) in enumerate(last["models"].items(), 1):
        place = last["places"].get(rid)
        st.text(f"{number}  place {place if place else '-'}  written by {model}")

# ---- a task to rank: the one on screen, or the next the store picks
if state.rank_task is None:
    found = store.next_task(user["id"], k=K, prefer_uncertain=least_certain, overlap=services.overlap())
    if found is not None:
        show(found)
mine = store.progress(user["id"])
st.caption(
    f"Ranked {mine['rankings']} and skipped {mine['skipped']} in all, {state.rank_done} in this session; "
    f"{mine['open_tasks']} prompts left for you."
)
if state.rank_task is None:
    st.info("Nothing left to rank for you. Thank you! New prompts arrive with the next evaluated model.")
else:
    task, token = state.rank_task["task"], state.rank_task["token"]
    if state.rank_task["supersedes"]:
        st.warning(f"Changing your ranking #{state.rank_task['supersedes']}: submit the new order.")
    st.text("Prompt")
    st.code(task.prompt, language=None, wrap_lines=True)
    for number, (column, response) in enumerate(zip(st.columns(len(task.responses)), task.responses, strict=True), 1):
        with column, st.container(border=True, key=f"response-{number}"):  # CSS class st-key-response-N
            st.markdown(f"**{number}**")
            st.markdown(logic.safe_markdown(response.text))  # Markdown renders; HTML and images show as text
    with st.form(f"rank-{token}", border=False):
        left, right = st.columns([1, 1])
        left.text_input(
            ORDER, key=f"order-{token}", max_chars=3 * len(task.responses),
            placeholder="numbers, best first",
            help="Type the response numbers best first and press Enter. '=' ties two: 31=42 puts 3 first, "
            "1 and 4 second, 2 last.",
        )  # fmt: skip
        right.text_input("Reason (optional; say why when you skip)", max_chars=2000, key=f"reason-{token}")
        submit_col, skip_col, _ = st.columns([1, 1, 4])
        with submit_col:  # the first submit button: Enter in a box presses this one
            st.form_submit_button("Submit and next", type="primary", on_click=submit, args=(False,))
        with skip_col:
            st.form_submit_button("Skip", on_click=submit, args=(True,))
    browser.focus(ORDER, token)

# ---- corrections: the labeler's recent rankings, each can be changed
with st.expander("Your recent rankings"):
    recent = store.recent_rankings(user["id"], limit=10)
    if not recent:
        st.text("None yet.")
    for entry in recent:
        ids = [r.id for r in entry.task.responses]
        said = "skipped" if entry.skipped else f"order {logic.order_from_ranking(entry.ranking, ids)}"
        st.text(f"#{entry.id}  {said}  {entry.task.prompt[:80]}")
        order = "" if entry.skipped else logic.order_from_ranking(entry.ranking, ids)
        st.button(f"Change #{entry.id}", key=f"change-{entry.id}", on_click=show, args=(entry.task, entry.id, order))

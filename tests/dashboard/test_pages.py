"""Every dashboard page through Streamlit's AppTest, against a real MLflow store and a real SQLite preference
store (tests/dashboard/conftest.py): what labelers submit lands in the store, labelers cannot reach admin pages
or actions, and signed-out visitors see only the sign-in."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from alignops import tracking
from tests.dashboard.conftest import APP, HOSTILE, MD5, PASSWORD, PROMPTS, Project

PAGES = APP.parent / "pages"
ADMIN_PAGES = ["runs", "models", "generations", "data"]
TIMEOUT = 60  # the first MLflow query in a process starts its store: seconds on 2 busy cores


def app() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=TIMEOUT)


def sign_in(name: str, password: str = PASSWORD) -> AppTest:
    at = app().run()
    field(at.text_input, "Name").input(name)
    field(at.text_input, "Password").input(password)
    field(at.button, "Sign in").click()
    return at.run()


def field(widgets, label: str):
    found = [w for w in widgets if w.label.startswith(label)]
    assert found, f"no widget labelled {label!r} among {[w.label for w in widgets]}"
    return found[0]


def texts(at: AppTest) -> list[str]:
    """Everything shown as plain text or code (never interpreted as markup)."""
    return [e.value for e in at.text] + [e.value for e in at.code]


def markup(at: AppTest) -> list[str]:
    """Everything shown as Markdown (where markup would take effect)."""
    return [e.value for kind in (at.markdown, at.caption, at.success, at.error, at.info, at.warning) for e in kind]


def page(at: AppTest, name: str) -> AppTest:
    return at.switch_page(f"pages/{name}.py").run()


def as_user(page_name: str, user: dict) -> AppTest:
    """A page file run on its own with a session already signed in: what a hand-typed URL would run."""
    at = AppTest.from_file(str(PAGES / f"{page_name}.py"), default_timeout=TIMEOUT)
    at.session_state["user"] = user
    return at.run()


def user_of(project: Project, name: str) -> dict:
    with project.store() as store:
        found = store.authenticate(name, PASSWORD)
    return {"id": found.id, "name": found.name, "role": found.role}


def writers(project: Project) -> dict[int, str]:
    """Response id -> model version, read from the table itself (not through the API the pages use)."""
    with project.store() as store, store._engine.connect() as connection:
        return dict(connection.execute(text("SELECT id, model_uri FROM responses")).all())


# ---------------------------------------------------------------------------------------------- identity


def test_signed_out_visitors_see_only_the_sign_in(project: Project) -> None:
    at = app().run()
    assert not at.exception
    assert [t.value for t in at.title] == ["alignops"]
    for name in ["rank", "rate", "labels", *ADMIN_PAGES]:
        # through the router (a deep link) and as a page file run alone: the sign-in form, nothing of the page
        for shown in (
            page(app().run(), name),
            AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=TIMEOUT).run(),
        ):
            assert [w.value for w in shown.warning] == ["Sign in first."], name
            assert [w.label for w in shown.text_input] == ["Name", "Password"], name
            assert not shown.title and not shown.dataframe and [b.label for b in shown.button] == ["Sign in"], name


def test_a_deep_link_lands_on_its_page_after_sign_in(project: Project) -> None:
    at = page(app().run(), "models")
    field(at.text_input, "Name").input(project.admin)
    field(at.text_input, "Password").input(PASSWORD)
    field(at.button, "Sign in").click()
    at.run()
    assert [t.value for t in at.title] == ["Models"], [t.value for t in at.title]


def test_a_wrong_password_signs_nobody_in(project: Project) -> None:
    at = sign_in(project.admin, "not the password at all")
    assert [e.value for e in at.error] == ["Wrong name or password."]
    assert at.session_state["user"] is None
    assert [t.value for t in at.title] == ["alignops"]


def test_sign_in_is_throttled_after_repeated_failures_and_they_are_logged(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    from dashboard.throttle import FREE_ATTEMPTS

    name = project.account("labeler")
    at = app().run()
    with caplog.at_level("WARNING", logger="alignops.dashboard"):
        for _ in range(FREE_ATTEMPTS):
            field(at.text_input, "Name").input(name)
            field(at.text_input, "Password").input("a wrong guess")
            field(at.button, "Sign in").click()
            at.run()
            assert [e.value for e in at.error] == ["Wrong name or password."]
        field(at.text_input, "Password").input(PASSWORD)  # the right one, too late
        field(at.button, "Sign in").click()
        at.run()
    assert at.error[0].value.startswith("Too many failed sign-ins. Wait ")
    assert at.session_state["user"] is None
    failed = [r.getMessage() for r in caplog.records if "sign-in failed" in r.getMessage()]
    assert len(failed) == FREE_ATTEMPTS and f"account {name!r}" in failed[-1]
    assert any("refused (throttled" in r.getMessage() for r in caplog.records)


def test_an_idle_session_signs_out(project: Project) -> None:
    from dashboard import tokens

    # a session signed in half an hour ago, untouched since (AppTest runs only the page after the first run:
    # a fresh run of the router with that state is the next action)
    signed_in = sign_in(project.account("labeler")).session_state
    at = app()
    for key in ("user", "restored", "cookie_issued"):
        at.session_state[key] = signed_in[key]
    at.session_state["last_seen"] = signed_in["last_seen"] - tokens.IDLE_S - 1
    at.run()
    assert at.session_state["user"] is None
    assert [i.value for i in at.info] == ["Signed out after 30 minutes without activity; sign in again."]


def test_deploy_and_clear_cache_are_hidden(project: Project) -> None:
    from streamlit import config

    app().run()
    assert config.get_option("client.toolbarMode") == "viewer"  # hides Deploy, Rerun and Clear cache


def test_labelers_cannot_reach_admin_pages_or_actions(project: Project) -> None:
    name = project.account("labeler")
    at = sign_in(name)
    assert [t.value for t in at.title] == ["Rank responses"]  # a labeler starts on Rank
    for admin_page in ADMIN_PAGES:  # not in a labeler's navigation ...
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(f"pages/{admin_page}.py")
    labeler = user_of(project, name)
    for admin_page in ADMIN_PAGES:  # ... and each page refuses a labeler itself
        refused = as_user(admin_page, labeler)
        assert [e.value for e in refused.error] == ["This page is for admins. Ask an admin if you need what it shows."]
        assert not refused.dataframe and not refused.button and not refused.code, admin_page
    labels = page(at, "labels")
    assert labels.title[0].value == "Labels"
    assert "Exporting labels is for admins." in texts(labels)
    assert not labels.get("download_button"), "a labeler was offered the export"
    assert not [b for b in labels.button if b.label in ("Add", "Import their samples")]


def test_the_first_admin_comes_from_the_environment(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIGNOPS_ADMIN_USER", "boss")
    monkeypatch.setenv("ALIGNOPS_ADMIN_PASSWORD", "a passphrase from the environment")
    at = sign_in("boss", "a passphrase from the environment")
    assert at.session_state["user"]["role"] == "admin"
    assert [t.value for t in at.title] == ["Runs"]  # an admin starts on Runs


# ---------------------------------------------------------------------------------------------- labeling


def order_box(at: AppTest):
    boxes = [t for t in at.text_input if t.label == "Order"]
    assert boxes, f"no ranking form: {texts(at)} {[e.value for e in at.info]}"
    return boxes[0]


def rank(at: AppTest, order: str, button: str = "Submit and next") -> AppTest:
    order_box(at).input(order)
    field(at.button, button).click()
    return at.run()


def shown_task(at: AppTest):
    return at.session_state["rank_task"]["task"]


def test_a_ranking_is_submitted_and_the_next_task_is_on_screen_in_one_run(project: Project) -> None:
    name = project.account("labeler")
    at = sign_in(name)
    task = shown_task(at)
    assert len(task.responses) == 3  # one response from each of the three evaluated versions, side by side
    assert not [t for t in texts(at) + markup(at) if "models:/" in t], "a model version was shown before the submit"
    unescaped = re.compile(r"(?<!\\)(<script|\[img\])")
    assert not [m for m in markup(at) if unescaped.search(m)], "raw HTML or an image as markup"
    focus = [h.proto.body for h in at.html if "focus()" in h.proto.body]
    assert len(focus) == 1 and 'aria-label=\\"Order\\"' in focus[0]  # the cursor starts in the Order box

    field(at.text_input, "Reason").input("2 and 3 say the same thing.")
    at = rank(at, "12=3")  # a tie for second place
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.success[0].value.startswith("Saved ranking #")
    shown_ids = [r.id for r in task.responses]
    truth = writers(project)
    revealed = [t for t in texts(at) if "written by" in t]
    assert revealed == [f"{n}  place {place}  written by {truth[rid]}"
                        for n, place, rid in zip((1, 2, 3), (1, 2, 2), shown_ids, strict=True)]  # fmt: skip
    assert {truth[rid] for rid in shown_ids} == set(project.versions.values())  # one answer of each version
    assert shown_task(at).prompt_id != task.prompt_id  # the next prompt, in the same run: no "Next" click

    with project.store() as store:
        records = [r for r in store.export_rankings()[0] if r["annotator"] == name]
        counts = store.counts()["by_annotator"][name]
    assert len(records) == 1 and counts["rankings"] == 1
    assert records[0]["ranking"] == [0, [1, 2]]  # responses in the order shown: 1 first, 2 = 3


def test_a_double_submit_stores_one_ranking(project: Project) -> None:
    name = project.account("labeler")
    at = sign_in(name)
    on_screen = at.session_state["rank_task"]
    at = rank(at, "312")
    first = at.success[0].value
    # The second click of a double click sends the same form again, with the same task and token.
    at.session_state["rank_task"] = on_screen
    at.run()
    at = rank(at, "312")
    assert at.success[0].value == first
    with project.store() as store:
        assert store.counts()["by_annotator"][name]["rankings"] == 1


def test_an_incomplete_order_is_refused_and_a_skip_is_stored(project: Project) -> None:
    name = project.account("labeler")
    at = sign_in(name)
    task = shown_task(at)
    at = rank(at, "1")
    assert "places not 2, 3" in at.error[0].value and shown_task(at) == task  # the task stays
    with project.store() as store:
        assert store.counts()["by_annotator"][name] == {"rankings": 0, "skipped": 0, "ratings": 0}

    field(at.text_input, "Reason").input("I cannot read Chinese.")
    field(at.button, "Skip").click()
    at.run()
    assert at.success[0].value == "Skipped." and shown_task(at).prompt_id != task.prompt_id
    with project.store() as store:
        assert store.counts()["by_annotator"][name] == {"rankings": 0, "skipped": 1, "ratings": 0}
        assert not [r for r in store.export_rankings()[0] if r["annotator"] == name]  # a skip is no label


@pytest.mark.parametrize("action", ["Submit and next", "Skip"])
def test_a_task_ranked_in_another_tab_is_dropped_and_the_next_one_loads(project: Project, action: str) -> None:
    name = project.account("labeler")
    tab1, tab2 = sign_in(name), sign_in(name)
    tab2.session_state["rank_task"] = tab1.session_state["rank_task"] | {"token": "tab-2"}  # the same prompt
    tab2.run()
    stale = shown_task(tab1)
    rank(tab1, "123")
    tab2 = rank(tab2, "321", button=action)
    assert not tab2.exception and not tab2.error, [e.value for e in tab2.error]
    assert [i.value for i in tab2.info][0].startswith("That prompt was already ranked")
    assert shown_task(tab2).prompt_id != stale.prompt_id and order_box(tab2)
    with project.store() as store:
        assert store.counts()["by_annotator"][name] == {"rankings": 1, "skipped": 0, "ratings": 0}


def test_a_labeler_corrects_a_recent_ranking(project: Project) -> None:
    name = project.account("labeler")
    at = sign_in(name)
    task = shown_task(at)
    at = rank(at, "123")
    first = int(at.success[0].value.split("#")[1].rstrip("."))
    field(at.button, f"Change #{first}").click()
    at.run()
    assert shown_task(at).prompt_id == task.prompt_id and order_box(at).value == "123"  # prefilled
    at = rank(at, "3=21")
    assert at.success[0].value.endswith(f"Corrected #{first}."), at.success[0].value
    with project.store() as store:
        labeler = store.authenticate(name, PASSWORD).id
        recent = store.recent_rankings(labeler)
    assert [r.id for r in recent] != [first] and len(recent) == 1  # one current ranking, the correction
    ids = [r.id for r in task.responses]
    assert recent[0].ranking == [[ids[2], ids[1]], [ids[0]]]


def scales(at: AppTest) -> list:
    return [s for s in at.segmented_control if s.label.split(":")[0] in ("Helpful", "Correct", "Harmless")]


def test_a_rating_submitted_on_the_page_lands_in_the_store(project: Project) -> None:
    name = project.account("labeler")
    at = page(sign_in(name), "rate")
    assert not [t for t in texts(at) if "models:/" in t]
    boxes = scales(at)
    assert [b.label.split(":")[0] for b in boxes] == ["Helpful", "Correct", "Harmless"]
    assert list(boxes[0].options) == ["1 not at all", "2 barely", "3 partly", "4 mostly", "5 fully"]  # visible
    left = int(at.caption[0].value.split("; ")[1].split(" left")[0])
    rated = at.session_state["rate_task"]["task"].response.id
    for box, score in zip(boxes, [4, 5, 2], strict=True):
        box.set_value(score)
    at.text_area[0].input("Polite, but <b>wrong</b> about the weather.")
    field(at.button, "Submit and next").click()
    at.run()
    assert not at.error, [e.value for e in at.error]
    with project.store() as store:
        mine = [r for r in store.ratings() if r.annotator == name]
    assert len(mine) == 1 and mine[0].response_id == rated
    assert mine[0].scores == {"helpful": 4, "correct": 5, "harmless": 2}
    assert mine[0].comment == "Polite, but <b>wrong</b> about the weather."
    assert f"written by {writers(project)[rated]}" in texts(at)  # revealed after the submit
    assert at.session_state["rate_task"]["task"].response.id != rated  # and the next one is on screen
    assert f"; {left - 1} left for you" in at.caption[0].value


def test_a_labeler_corrects_a_recent_rating(project: Project) -> None:
    name = project.account("labeler")
    at = page(sign_in(name), "rate")
    rated = at.session_state["rate_task"]["task"].response.id
    for box, score in zip(scales(at), [4, 5, 2], strict=True):
        box.set_value(score)
    field(at.button, "Submit and next").click()
    at.run()
    first = int(at.success[0].value.split("#")[1].rstrip("."))
    field(at.button, f"Change #{first}").click()
    at.run()
    assert at.session_state["rate_task"]["task"].response.id == rated
    assert [s.value for s in scales(at)] == [4, 5, 2]  # prefilled
    scales(at)[2].set_value(5)
    field(at.button, "Submit and next").click()
    at.run()
    assert at.success[0].value.endswith(f"Corrected #{first}."), at.success[0].value
    with project.store() as store:
        mine = [r for r in store.ratings() if r.annotator == name]
    assert len(mine) == 1 and mine[0].scores == {"helpful": 4, "correct": 5, "harmless": 5}  # the current one


def test_rate_skips_a_response(project: Project) -> None:
    at = page(sign_in(project.account("labeler")), "rate")
    first = at.session_state["rate_task"]["task"].response.id
    field(at.button, "Skip").click()
    at.run()
    assert at.session_state["rate_task"]["task"].response.id != first
    assert "(1 skipped in this session)" in at.caption[0].value and not at.error


def test_rate_offers_responses_of_prompts_the_labeler_already_ranked(project: Project) -> None:
    name = project.account("labeler")
    labeler = user_of(project, name)
    with project.store() as store:  # ranked (or skipped) every prompt there is
        while (task := store.next_task(labeler["id"])) is not None:
            store.submit_ranking(labeler["id"], task.prompt_id, [], f"{name}-{task.prompt_id}", skipped=True)
        assert store.progress(labeler["id"])["open_tasks"] == 0
    at = page(sign_in(name), "rate")
    assert not at.info, [i.value for i in at.info]  # not "Nothing left to rate"
    assert at.code[0].value in PROMPTS
    assert len(scales(at)) == 3


def test_rank_offers_first_where_the_reward_model_is_least_certain(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a store of its own: prompts whose two answers the reward model scored close, apart and far apart."""
    from alignops.feedback.store import Store

    url = f"sqlite:///{tmp_path / 'scored.db'}"
    monkeypatch.setenv("ALIGNOPS_DATABASE_URL", url)
    gaps = {"close": 0.05, "apart": 1.0, "far apart": 6.0}
    with Store(url) as store:
        ann = store.add_annotator("ann", PASSWORD)
        for uri in ("models:/m/1", "models:/m/2"):
            store.import_samples(uri, [{"sample_id": p, "prompt": p, "completion": f"{uri}: {p}"} for p in gaps])
    user = {"id": ann.id, "name": ann.name, "role": ann.role}

    at = as_user("rank", user)  # no scores yet: the toggle is off and cannot be switched on
    toggle = field(at.toggle, "Least certain first")
    assert toggle.value is False and toggle.proto.disabled
    with Store(url) as store:  # the evaluations' reward scores arrive with the samples imported again
        for uri, sign in (("models:/m/1", 0), ("models:/m/2", 1)):
            store.import_samples(uri, [{"sample_id": p, "prompt": p, "completion": f"{uri}: {p}",
                                        "reward": 0.2 + sign * gap} for p, gap in gaps.items()])  # fmt: skip

    at = as_user("rank", user)
    toggle = field(at.toggle, "Least certain first")
    assert toggle.value is True and not toggle.proto.disabled  # on by default once scores exist
    offered = []
    for n in range(3):
        offered.append(at.code[0].value)
        field(at.button, "Skip").click()
        at.run()
        assert at.success[0].value == "Skipped."
        assert f"Ranked 0 and skipped {n + 1} in all, {n + 1} in this session" in at.caption[0].value
    assert offered == ["close", "apart", "far apart"]
    assert at.info[0].value.startswith("Nothing left to rank for you.")


def test_a_rating_needs_every_score(project: Project) -> None:
    name = project.account("labeler")
    at = page(sign_in(name), "rate")
    scales(at)[0].set_value(3)
    field(at.button, "Submit and next").click()
    at.run()
    assert at.error[0].value.replace("\\", "") == "Score every criterion from 1 to 5; missing: correct, harmless."
    with project.store() as store:
        assert not [r for r in store.ratings() if r.annotator == name]


def test_labels_page_shows_counts_agreement_and_exports_for_admins(project: Project) -> None:
    # two labelers rank the same prompt: agreement becomes defined
    names = [project.account("labeler") for _ in range(2)]
    with project.store() as store:
        ids = [store.authenticate(name, PASSWORD).id for name in names]
        task = store.next_task(ids[0], k=4, seed=0)
        shown = [r.id for r in task.responses]
        for annotator, ranking in zip(ids, ([[shown[0]], shown[1:]], [shown[1:], [shown[0]]]), strict=True):
            store.submit_ranking(annotator, task.prompt_id, ranking, client_token=f"t-{annotator}", shown=shown)
        exported = len(store.export_rankings()[0])
    at = page(sign_in(project.admin), "labels")
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["rankings"]) == exported and int(metrics["responses"]) == 12
    assert metrics["Rankings: same order of a pair"] != "-"
    by_annotator = at.dataframe[0].value
    assert set(names) <= set(by_annotator.index)
    download = at.get("download_button")
    assert len(download) == 1 and f"Download {exported} rankings" in download[0].proto.label

    field(at.text_input, "Name").input("newcomer")
    field(at.text_input, "Initial password").input("a fresh passphrase 1")
    field(at.button, "Add").click()
    at.run()
    assert "newcomer (labeler) can sign in now." in texts(at)
    with project.store() as store:
        assert store.authenticate("newcomer", "a fresh passphrase 1").role == "labeler"

    field(at.button, "Import their samples").click()  # every evaluated version is imported already: nothing new
    at.run()
    assert at.success[0].value == "Imported 0 new responses."


# ---------------------------------------------------------------------------------------------- admin pages


def test_runs_page_compares_runs(project: Project) -> None:
    at = page(sign_in(project.admin), "runs")
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert {"pipeline", "data-build", "data-validate", "sft", "ppo", "evaluate"} <= set(table["stage"])
    metrics = [c for c in table.columns if "/" in c]
    assert metrics[:3] == ["validation/success", "validation/failed_expectations", "eval/win_rate_judge"]
    assert "train/lr" not in metrics and "train/loss" in metrics  # the stages' key metrics only ...
    field(at.toggle, "All metric columns").set_value(True)
    at.run()
    assert "train/lr" in at.dataframe[0].value.columns  # ... every one behind the toggle
    runs = [project.run_ids["policy-1"], project.run_ids["policy-2"]]
    field(at.multiselect, "Runs to plot").set_value(runs)
    at.run()
    charts = [c.proto.spec for c in at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")]
    assert len(charts) == 2, "expected the train/loss curve and the reward-against-KL chart"
    assert "Reward against KL" in charts[1] and '"labelLimit": 0' in charts[0].replace(":0", ": 0")
    once = at.dataframe[1].value  # val/loss, logged once per run: numbers, not one-dot charts
    assert list(once.columns) == ["val/loss"] and len(once) == 2
    field(at.radio, "x axis").set_value("seconds")
    at.run()
    assert not at.exception
    diff = at.dataframe[-1].value
    assert list(diff["key"]) == ["ppo.lr"], diff  # the two runs differ in their learning rate only


def test_models_page_shows_versions_lineage_evaluations_and_promotes(project: Project) -> None:
    at = page(sign_in(project.admin), "models")
    assert not at.exception and not at.error
    assert field(at.selectbox, "Registered model").value == "alignops-policy"  # the model with a champion
    versions = at.dataframe[0].value
    assert list(versions["version"]) == [2, 1]
    assert list(versions["aliases"]) == ["challenger", "champion"]
    assert "eval/win_rate_judge" in versions.columns
    lineage = at.dataframe[1].value
    assert list(lineage["model version"]) == [project.versions["challenger"], project.versions["sft"]]
    figures = [h.proto.body for h in at.html if "<figure>" in h.proto.body]
    assert len(figures) == 2 and not at.image  # each side's figure, inline: nothing under /media
    assert all('src="data:image/png;base64,' in f and "response_lengths.png" in f for f in figures)
    deltas = at.dataframe[-1].value
    assert deltas.set_index("metric").loc["eval/f1", "change"] == pytest.approx(0.05)  # challenger - champion

    field(at.button, "Run the promotion gate").click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    decided = tracking.model_version_tags(project.versions["challenger"])
    assert decided[tracking.PROMOTION_TAG].startswith(("passed", "failed"))
    shown = [m.value for m in [*at.success, *at.warning]]
    assert shown == ["Promoted to champion." if decided[tracking.PROMOTION_TAG] == "passed" else "Not promoted."]


def test_generations_page_shows_versions_side_by_side_as_text(project: Project) -> None:
    at = page(sign_in(project.admin), "generations")
    assert not at.exception and not at.error
    field(at.radio, "Compare").set_value("Evaluated versions side by side")
    at.run()
    chosen = field(at.multiselect, "Model versions").value
    champion = tracking.alias_uri("alignops-policy", "champion")  # another test may have promoted the challenger
    assert len(chosen) == 2 and chosen[0] == champion
    style = {project.versions["sft"]: "plain", project.versions["champion"]: "warm",
             project.versions["challenger"]: "bright"}  # fmt: skip
    shown = texts(at)
    for uri in chosen:
        assert sum(f"{style[uri]} answer" in t for t in shown) == 3, uri
        assert f"{HOSTILE} ({style[uri]})" in shown  # shown as text ...
    assert not [m for m in markup(at) if "attacker" in m or "<script>" in m]  # ... never as markup
    field(at.text_input, "Filter prompts").input("film")
    at.run()
    assert [t for t in texts(at) if t.startswith("Prompt ")] == ["Prompt s1  en  eval-chat"]


def test_generations_shows_one_evaluations_model_against_its_baseline_filtered(project: Project) -> None:
    at = page(sign_in(project.admin), "generations")
    assert field(at.radio, "Compare").value == "One evaluation: model against its baseline"  # the default
    field(at.selectbox, "Model version").set_value(project.versions["challenger"])
    at.run()
    assert not at.exception and not at.error
    shown = texts(at)
    assert sum(t.startswith("Prompt ") for t in shown) == len(PROMPTS)
    assert "baseline's answer s3" in shown and "bright answer 3: " + "sunny " * 4 in shown
    champion = project.versions["champion"]
    assert champion in shown or f"{champion} (champion)" in shown  # the baseline's column names it
    field(at.multiselect, "Language").set_value(["zh"])
    at.run()
    assert [t for t in texts(at) if t.startswith("Prompt ")] == ["Prompt s2  zh  eval-tweets"]
    field(at.multiselect, "Language").set_value([])
    field(at.multiselect, "Source").set_value(["eval-chat"])
    at.run()
    assert [t for t in texts(at) if t.startswith("Prompt ")] == ["Prompt s1  en  eval-chat", "Prompt s3  en  eval-chat"]
    field(at.selectbox, "Model version").set_value(project.versions["sft"])  # evaluated without a baseline
    at.run()
    assert at.info[0].value.startswith("The evaluation of models:/alignops-sft/1 had no baseline")


def test_data_page_shows_versions_datasheets_and_validation(project: Project) -> None:
    at = page(sign_in(project.admin), "data")
    assert not at.exception and not at.error
    assert [h.value for h in at.subheader] == ["Latest validation", "Versions"]  # the verdict first
    assert [e.label for e in at.expander] == ["Validation report", "Datasheet"]  # the details folded
    table = at.dataframe[0].value
    assert list(table["data version"]) == MD5[::-1]  # newest first
    assert list(table["message"]) == ["data version 2", "data version 1"]
    assert "version 2 of the data" in at.markdown[-1].value  # the work tree's datasheet
    field(at.selectbox, "Datasheet of version").set_value(MD5[0])
    at.run()
    assert "version 1 of the data, as logged" in at.markdown[-1].value  # from that version's build run
    assert at.success[0].value == "Passed every suite."
    assert "42 expectations" in at.code[-1].value


def test_every_page_loads_without_error(project: Project, record_property) -> None:
    """Each page opens for an admin; its load time is recorded (pytest --junitxml) for the issue's note."""
    import time

    at = sign_in(project.admin)
    for name in ["runs", "models", "generations", "data", "rank", "rate", "labels"]:
        start = time.perf_counter()
        page(at, name)
        record_property(f"load_s_{name}", round(time.perf_counter() - start, 3))
        assert not at.exception, (name, at.exception)
        assert at.title, name

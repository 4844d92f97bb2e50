"""The Models and Runs pages show each model figure beside its classic baseline's, with the margin (AppTest, against
the real MLflow store of tests/dashboard/conftest.py, whose evaluate and ner runs log the baseline figures as the
stages do)."""

from __future__ import annotations

import pytest

from tests.dashboard.conftest import Project
from tests.dashboard.test_pages import field, page, sign_in


def margin_tables(at) -> list:
    return [d.value for d in at.dataframe if "beats baseline" in d.value.columns]


def test_models_page_shows_both_versions_against_their_baselines(project: Project) -> None:
    at = page(sign_in(project.admin), "models")
    assert not at.exception and not at.error
    champion, challenger = margin_tables(at)  # left: champion (quality 0.5), right: challenger (quality 0.7)
    for table in (champion, challenger):
        assert list(table["figure"]) == ["eval/ppl", "eval/f1"]
        assert list(table["baseline"]) == ["eval/ppl_trigram", "eval/f1_bow"]
    # champion: ppl 35 = the trigram's 35, F1 0.525 < 0.55; challenger: ppl 33, F1 0.575
    assert list(champion["margin"]) == pytest.approx([0.0, -0.025])
    assert list(champion["beats baseline"]) == [False, False]
    assert list(challenger["model"]) == pytest.approx([33.0, 0.575])
    assert list(challenger["margin"]) == pytest.approx([2.0, 0.025])
    assert list(challenger["beats baseline"]) == [True, True]


def test_runs_page_shows_the_margins_by_default_and_beside_the_baselines(project: Project) -> None:
    at = page(sign_in(project.admin), "runs")
    assert not at.exception and not at.error
    columns = list(at.dataframe[0].value.columns)
    assert {"eval/f1_margin", "eval/ppl_margin", "test/entity_f1_margin_over_baseline"} <= set(columns)
    assert "baseline/entity_f1_micro" in columns
    field(at.multiselect, "Runs to plot").set_value([project.run_ids["ner"], project.run_ids["evaluate-sft"]])
    at.run()
    assert not at.exception
    (table,) = margin_tables(at)
    rows = {(run.split(" · ")[0], figure): row for (run, figure), row in table.set_index(["run", "figure"]).iterrows()}
    ner = rows[("ner", "test/entity_f1_micro")]
    assert (ner["model"], ner["baseline value"]) == pytest.approx((0.42, 0.53))
    assert ner["margin"] == pytest.approx(-0.11) and not ner["beats baseline"]
    sft_f1 = rows[("evaluate", "eval/f1")]  # the sft version's evaluation: quality 0.1
    assert sft_f1["model"] == pytest.approx(0.425) and sft_f1["margin"] == pytest.approx(-0.125)
    assert set(rows) == {("ner", "test/entity_f1_micro"), ("evaluate", "eval/ppl"), ("evaluate", "eval/f1")}

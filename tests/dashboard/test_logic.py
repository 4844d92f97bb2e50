"""The dashboard's plain functions, on hand-computed cases."""

from __future__ import annotations

import pytest

from dashboard import logic


def test_places_of_a_ranking_share_a_place_when_tied() -> None:
    assert logic.places([[12], [10, 11], [13]]) == {12: 1, 10: 2, 11: 2, 13: 4}


def record(annotator: str, ranking: list, prompt: str = "p", responses: tuple = ("a", "b", "c")) -> dict:
    return {"prompt": prompt, "responses": list(responses), "ranking": ranking, "annotator": annotator}


def test_agreement_counts_pairs_said_the_same_way() -> None:
    # x: a > b > c.  y: a = b > c.  Pairs (a,b) differ (above vs tie); (a,c) and (b,c) agree: 2 of 3.
    # y shows its responses in another order: the same item, compared by text.
    result = logic.agreement([record("x", [0, 1, 2]), record("y", [[1, 2], 0], responses=("c", "a", "b"))])
    assert (result.items, result.comparisons) == (1, 3)
    assert result.agreement == pytest.approx(2 / 3)
    assert result.by_pair == {("x", "y"): (3, pytest.approx(2 / 3))}
    assert result.alpha is not None and result.alpha < 1.0

    same = logic.agreement([record("x", [0, 1, 2]), record("y", [0, 1, 2]), record("z", [2, 1, 0], prompt="q")])
    assert (same.items, same.comparisons, same.agreement) == (1, 3, 1.0)  # z's prompt has no second annotator


def test_agreement_is_undefined_without_overlap() -> None:
    result = logic.agreement([record("x", [0, 1, 2]), record("y", [0, 1, 2], prompt="other")])
    assert (result.items, result.comparisons, result.agreement, result.alpha) == (0, 0, None, None)


def test_config_diff_keeps_only_differences() -> None:
    a = {"sft": {"lr": 0.001, "steps": 10}, "name": "tiny", "tags": [1, 2]}
    b = {"sft": {"lr": 0.0003, "steps": 10}, "name": "tiny", "tags": [1, 3], "extra": True}
    assert logic.config_diff({"A": a, "B": b}) == [
        {"key": "extra", "A": "(absent)", "B": "true"},
        {"key": "sft.lr", "A": "0.001", "B": "0.0003"},
        {"key": "tags", "A": "[1, 2]", "B": "[1, 3]"},
    ]
    assert logic.config_diff({"A": a, "B": dict(a)}) == []


def test_metric_rows_put_runs_on_a_common_clock() -> None:
    rows = logic.metric_rows({"r1": [(0, 10_000, 3.0), (1, 12_500, 2.0)], "r2": [(0, 99_000, 5.0)], "r3": []})
    assert rows == [
        {"run": "r1", "step": 0, "seconds": 0.0, "value": 3.0},
        {"run": "r1", "step": 1, "seconds": 2.5, "value": 2.0},
        {"run": "r2", "step": 0, "seconds": 0.0, "value": 5.0},
    ]


def test_side_by_side_joins_on_sample_id_in_the_first_order() -> None:
    def rows(texts: dict[str, str]) -> list[dict]:
        return [{"sample_id": sid, "prompt": f"P{sid}", "completion": text} for sid, text in texts.items()]

    one = rows({"s2": "x2", "s1": "x1"})
    two = rows({"s1": "y1", "s2": "y2", "s3": "y3"})
    joined = logic.side_by_side({"m1": one, "m2": two})
    assert [r["sample_id"] for r in joined] == ["s2", "s1"]  # s3: only m2 wrote it
    assert joined[0]["outputs"]["m2"]["completion"] == "y2"


def test_lineage_follows_parents_and_stops_at_loops() -> None:
    parents = {"policy/2": "sft/1", "sft/1": "base/1", "base/1": "none", "a": "b", "b": "a"}
    assert logic.lineage("policy/2", parents) == ["policy/2", "sft/1", "base/1"]
    assert logic.lineage("a", parents) == ["a", "b"]
    assert logic.lineage("unknown", parents) == ["unknown"]


def test_metric_deltas() -> None:
    assert logic.metric_deltas({"a": 1.0, "b": 2.0}, {"a": 1.5, "c": 3.0}) == [
        {"metric": "a", "left": 1.0, "right": 1.5, "change": 0.5},
        {"metric": "b", "left": 2.0, "right": None, "change": None},
        {"metric": "c", "left": None, "right": 3.0, "change": None},
    ]


def test_markdown_escape_leaves_no_markup() -> None:
    escaped = logic.md_escape("![x](http://e.invalid/p.png) **b** <i>")
    assert escaped == r"\!\[x\]\(http\://e\.invalid/p\.png\) \*\*b\*\* \<i\>"


def test_jsonl_round_trip_and_errors_name_the_line() -> None:
    records = [{"a": 1, "t": "春"}, {"b": [1, 2]}]
    assert logic.parse_jsonl(logic.to_jsonl(records)) == records
    with pytest.raises(ValueError, match="line 2"):
        logic.parse_jsonl('{"a": 1}\n{oops\n')


# ---------------------------------------------------------------------------------------------- fast hands


def test_an_order_typed_best_first_becomes_the_stores_ranking() -> None:
    ids = [10, 11, 12, 13]
    assert logic.ranking_from_order("3142", ids) == [[12], [10], [13], [11]]
    assert logic.ranking_from_order("3 1=4, 2", ids) == [[12], [10, 13], [11]]  # a tie; spaces and commas ignored
    assert logic.order_from_ranking([[12], [10, 13], [11]], ids) == "31=42"  # the inverse, for a correction
    for typed, message in [("314", "places not 2"), ("3142 1", "places 1 more than once"),
                           ("3152", "'5' is not a response number"), ("=3142", "'=' goes between"),
                           ("3142=", "ends with '='"), ("31==42", "'=' goes between")]:  # fmt: skip
        with pytest.raises(logic.FormError, match=message):
            logic.ranking_from_order(typed, ids)


def test_model_text_renders_markdown_but_no_html_links_or_images() -> None:
    text = '<script>alert("x")</script> ![img](http://attacker.invalid/p.png) [click](http://x.invalid) **bold**'
    assert logic.safe_markdown(text) == (
        '\\<script>alert("x")\\</script> !\\[img](http\\://attacker.invalid/p.png) '
        "\\[click](http\\://x.invalid) **bold**"
    )


def test_a_figure_is_inline_html_carrying_its_bytes() -> None:
    html = logic.inline_image(b"\x89PNG", 'a "quoted" <name>.png')
    assert 'src="data:image/png;base64,iVBORw==' in html
    assert "&lt;name&gt;" in html and "<name>" not in html


# ---------------------------------------------------------------------------------------- sessions, sign-in


def test_a_session_token_is_signed_and_expires() -> None:
    from dashboard import tokens

    secret, now = b"k" * 32, 1_000_000.0
    token = tokens.issue(7, secret, now)
    assert tokens.verify(token, secret, now + 60) == 7
    assert tokens.issued_at(token) == 1_000_000
    assert tokens.verify(token, secret, now + tokens.IDLE_S) is None  # expired
    assert tokens.verify(token, b"other" * 8, now) is None  # another key
    forged = token.replace("7.", "1.", 1)  # someone else's id with this signature
    assert tokens.verify(forged, secret, now) is None
    for bad in (None, "", "7", "x.y.z", token + "0"):
        assert tokens.verify(bad, secret, now) is None


def test_sign_in_back_off_doubles_after_the_free_attempts() -> None:
    from dashboard.throttle import FIRST_WAIT_S, FREE_ATTEMPTS, MAX_WAIT_S, Throttle

    throttle, keys, now = Throttle(), ["account:ann", "client:10.0.0.1"], 100.0
    for _ in range(FREE_ATTEMPTS - 1):
        throttle.failed(keys, now)
        assert throttle.wait_s(keys, now) == 0
    assert throttle.failed(keys, now) == FREE_ATTEMPTS
    assert throttle.wait_s(keys, now) == FIRST_WAIT_S
    assert throttle.wait_s(["client:10.0.0.1", "account:bob"], now + 1) == FIRST_WAIT_S - 1  # per client too
    throttle.failed(keys, now + FIRST_WAIT_S)
    assert throttle.wait_s(keys, now + FIRST_WAIT_S) == 2 * FIRST_WAIT_S
    assert Throttle.backoff_s(FREE_ATTEMPTS + 40) == MAX_WAIT_S
    throttle.succeeded(keys)
    assert throttle.wait_s(keys, now + FIRST_WAIT_S) == 0


# ---------------------------------------------------------------------------------------------- engineers


def test_runs_show_each_stages_key_metrics_and_reward_against_kl_by_step() -> None:
    available = ["train/loss", "train/lr", "val/loss", "ppo/kl", "ppo/reward", "eval/f1"]
    assert logic.metric_columns(["sft", "ppo", None], available) == ["train/loss", "val/loss", "ppo/reward", "ppo/kl"]
    reward = [(0, 0, 0.1), (1, 5, 0.3), (2, 9, 0.4)]
    kl = [(1, 5, 0.5), (2, 9, 1.5), (3, 12, 2.0)]  # KL logged from step 1: only steps 1 and 2 pair up
    assert logic.trade_off_rows({"run a": (reward, kl)}) == [
        {"run": "run a", "step": 1, "kl": 0.5, "reward": 0.3},
        {"run": "run a", "step": 2, "kl": 1.5, "reward": 0.4},
    ]


def test_one_evaluations_samples_give_the_model_against_its_baseline() -> None:
    samples = [
        {"sample_id": "s0", "prompt": "Hi", "completion": "mine", "lang": "en", "source": "chat",
         "baseline_uri": "models:/m/1", "baseline_completion": "theirs", "baseline_reward": 0.2},
        {"sample_id": "s1", "prompt": "你好", "completion": "mine 2", "lang": "zh", "source": "chat",
         "baseline_uri": "models:/m/1", "baseline_completion": "theirs 2"},
    ]  # fmt: skip
    baseline, rows = logic.against_baseline("models:/m/2", samples)
    assert baseline == "models:/m/1"
    assert rows[0]["outputs"]["models:/m/1"] == {"completion": "theirs", "reward": 0.2, "judge": None}
    assert rows[0]["outputs"]["models:/m/2"]["completion"] == "mine"
    assert [r["sample_id"] for r in logic.filter_rows(rows, langs=["zh"])] == ["s1"]
    assert [r["sample_id"] for r in logic.filter_rows(rows, sources=["chat"], words="HI")] == ["s0"]
    assert logic.against_baseline("models:/m/2", [{"sample_id": "s", "prompt": "p", "completion": "c"}]) == (None, [])


def test_each_figure_beside_its_baseline_with_the_margin() -> None:
    metrics = {"eval/ppl": 30.0, "eval/ppl_trigram": 40.0, "eval/f1": 0.6, "eval/f1_bow": 0.8, "eval/f1_margin": -0.2,
               "test/entity_f1_micro": 0.5, "baseline/entity_f1_micro": 0.4, "eval/reward": 1.0}  # fmt: skip
    rows = {row["figure"]: row for row in logic.baseline_margins(metrics)}
    assert list(rows) == ["eval/ppl", "eval/f1", "test/entity_f1_micro"]
    # perplexity: lower wins, so the margin is the baseline's minus the model's (computed: none was logged)
    assert rows["eval/ppl"]["margin"] == 10.0 and rows["eval/ppl"]["beats baseline"]
    assert rows["eval/f1"]["margin"] == -0.2 and not rows["eval/f1"]["beats baseline"]  # the logged margin
    assert rows["test/entity_f1_micro"]["margin"] == pytest.approx(0.1)
    assert rows["test/entity_f1_micro"]["baseline value"] == 0.4
    # a figure without its baseline (or a baseline without its figure) gives no row
    assert logic.baseline_margins({"eval/f1": 0.6, "eval/ppl_trigram": 40.0}) == []

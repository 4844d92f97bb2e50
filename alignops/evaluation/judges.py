"""The independent judges: sentiment scorers shipped by PyPI packages, never trained here, so a policy that games
our reward model shows as a gap between the reward model's verdict and the judges'.

    judge("What a wonderful, kind gesture!", "en")    # VADER compound, in [-1, 1]
    judge("质量太差了，很失望", "zh")                     # snownlp: 2 * P(positive) - 1, in [-1, 1]
    afinn("What a wonderful, kind gesture!")           # AFINN-165: the sum of its words' valences (-5..5 each)

The judge is chosen by the PROMPT's language, never by each response's: both answers to one prompt are scored
on one scale, whatever script a small model happens to write. English prompts go to VADER (Hutto & Gilbert 2014,
a rule-based lexicon) and, as a second independent judge, to AFINN (Nielsen 2011, a word list rated by one
person, no rules: `afinn==0.1`, lexicon inside the package); Chinese prompts to snownlp's naive Bayes sentiment
model. They judge what our rankings reward (more positive text), not helpfulness or correctness, so they are
used only on prompts whose goal they measure (datasets.JUDGED_TASKS), never on a classification answer: VADER
scores the label word "Positive." +0.56 and snownlp scores "正面。" -0.30. Know their limits: snownlp's model was
fit on the same review corpus the Chinese rankings come from, and VADER's lexicon was rated by people like those
whose ratings order the English rankings; they are independent of our training, not of our data sources.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache


@cache
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


@cache
def _afinn():
    from afinn import Afinn

    return Afinn(language="en")


def english(text: str) -> float:
    """VADER's compound score: -1 most negative, 0 neutral, 1 most positive."""
    return float(_vader().polarity_scores(text)["compound"])


def chinese(text: str) -> float:
    """snownlp's P(positive) mapped to [-1, 1], so both judges share one scale."""
    from snownlp import SnowNLP  # about 2 s to import: only when a Chinese text shows up

    return 2.0 * float(SnowNLP(text).sentiments) - 1.0


def afinn(text: str) -> float:
    """The second English judge: AFINN-165's valence sum (0 for text without a listed word)."""
    return float(_afinn().score(text))


def judge(text: str, lang: str) -> float:
    """The judge's score of one text in [-1, 1] for a prompt in `lang` ("zh": snownlp, else VADER). Text without
    letters (empty, punctuation) is neutral: 0."""
    text = text.strip()
    if not any(ch.isalpha() for ch in text):
        return 0.0
    return chinese(text) if lang == "zh" else english(text)


def judge_all(texts: Sequence[str], langs: Sequence[str]) -> list[float]:
    """judge() of each text, each with its prompt's language."""
    if len(texts) != len(langs):
        raise ValueError(f"{len(texts)} texts but {len(langs)} prompt languages")
    return [judge(t, lang) for t, lang in zip(texts, langs, strict=True)]

"""The preference store's plain values (what its methods return: annotators, tasks, labels, judgments) and the
input checks its parts share. No database work here.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from alignops.errors import StoreError

MAX_TEXT_CHARS = 4_000  # reasons and comments


@dataclass(frozen=True)
class Annotator:
    id: int
    name: str
    role: str  # "labeler" or "admin"


@dataclass(frozen=True)
class Response:
    id: int
    text: str


@dataclass(frozen=True)
class Task:
    """One prompt to rank and its responses, shuffled; which model wrote which stays hidden."""

    prompt_id: int
    prompt: str
    responses: list[Response]


@dataclass(frozen=True)
class RatingTask:
    """One response to rate, with the prompt it answers; which model wrote it stays hidden."""

    prompt_id: int
    prompt: str
    response: Response


@dataclass(frozen=True)
class RecentRanking:
    """One of an annotator's current rankings (or skips), newest first: what a correction starts from."""

    id: int
    task: Task  # the prompt and the responses in the order they were shown
    ranking: list[list[int]]  # response ids best first, ties grouped; [] for a skip
    skipped: bool
    reason: str


@dataclass(frozen=True)
class RecentRating:
    """One of an annotator's current ratings, newest first: what a correction starts from."""

    id: int
    task: RatingTask
    scores: dict[str, int]  # criterion -> 1..5
    comment: str


@dataclass(frozen=True)
class RatingRow:
    annotator: str
    model_uri: str
    response_id: int
    prompt_id: int
    scores: dict[str, int]  # criterion -> 1..5
    comment: str = ""
    id: int = 0  # the rating's row id


@dataclass(frozen=True)
class Judgment:
    """One pairwise outcome from a ranking: model_uri's response against other_uri's, on one prompt."""

    annotator: str
    prompt_id: int
    model_uri: str
    other_uri: str
    outcome: float  # 1 win, 0.5 tie, 0 loss (for model_uri)


def pairs(result) -> dict:
    """{first column: second column} of a two-column result (dict(result) would take it for a mapping)."""
    return {key: value for key, value in result}


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def checked_text(value: Any, what: str, limit: int = MAX_TEXT_CHARS) -> str:
    if not isinstance(value, str):
        raise StoreError(f"{what} must be text, got {type(value).__name__}")
    if len(value) > limit:
        raise StoreError(f"{what} has {len(value)} characters; shorten it to at most {limit}")
    return value


def checked_token(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise StoreError(
            f"client_token {value!r} is not a token: give each submission its own non-empty string of at most "
            "200 characters (uuid.uuid4().hex), and reuse it only when retrying that same submission"
        )
    return value


def checked_reward(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise StoreError(
            f"{where}: reward {value!r} is not a finite number; give the reward model's score of the completion, "
            'or null (or no "reward" key) when it was not scored'
        )
    return float(value)


def checked_id(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise StoreError(f"{what} must be an integer id, got {value!r}")
    return value

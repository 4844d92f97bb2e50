"""The data contracts: which sets exist, their splits, fields and JSON types, allowed labels, languages and tasks,
and which held-out values must never occur in a train split. Everything else (the build, the GX suites, the
loaders, the imports and exports) reads them from here.

    CONTRACTS["sft"].columns          # {"prompt": "str", "response": "str", ...}
    SET_SPLITS["eval_prompts"]        # ("test",)
    leaks_of("eval_prompts")          # the leak checks of a set's held-out splits

Pure data and functions: no pandas, no Great Expectations (alignops.data.expectations builds the suites).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SPLITS = ("train", "val", "test")
LANGUAGES = ("en", "zh")
LABELS = ("negative", "positive")  # classification labels
# An eval prompt's task: "classify" asks for a sentiment label (scored by F1 against the label, never by a judge:
# the label word has a sentiment of its own); "write" (the ranking tasks), "continue" (a passage) and "answer"
# (an open question) ask for text whose sentiment the independent judges measure.
EVAL_TASKS = ("classify", "write", "continue", "answer")
JUDGED_TASKS = frozenset({"write", "continue", "answer"})


@dataclass(frozen=True)
class ValidationBounds:
    """Numeric bounds and value sets the data contracts are checked against.

    Attributes:
        min_text_chars: minimum length of ``text`` (corpus, classification).
        max_text_chars: maximum length of ``text``.
        min_prompt_chars: minimum length of ``prompt`` (sft, rankings, eval_prompts).
        max_prompt_chars: maximum length of ``prompt``.
        min_response_chars: minimum length of an sft ``response`` and of every
            element of a ranking's ``responses``.
        max_response_chars: maximum length of those responses.
        max_duplicate_rate: largest allowed fraction of duplicate records per split,
            i.e. ``1 - unique/rows`` of the set's duplicate key (``text``,
            ``prompt+response``, ...).
        min_rows: every split must have at least this many records.
        min_responses: a ranking must compare at least this many responses (K).
        languages: allowed values of ``lang``.
        labels: allowed values of classification ``label``.
        eval_tasks: allowed values of an eval prompt's ``task``.
    """

    min_text_chars: int = 1
    max_text_chars: int = 20_000
    min_prompt_chars: int = 1
    max_prompt_chars: int = 4_000
    min_response_chars: int = 1
    max_response_chars: int = 8_000
    max_duplicate_rate: float = 0.01
    min_rows: int = 1
    min_responses: int = 2
    languages: tuple[str, ...] = LANGUAGES
    labels: tuple[str, ...] = LABELS
    eval_tasks: tuple[str, ...] = EVAL_TASKS

    def __post_init__(self) -> None:
        for kind in ("text", "prompt", "response"):
            lo, hi = self.chars(kind)
            if not 0 <= lo <= hi:
                raise ValueError(f"need 0 <= min_{kind}_chars <= max_{kind}_chars, got {lo}, {hi}")
        if not 0.0 <= self.max_duplicate_rate <= 1.0:
            raise ValueError(f"max_duplicate_rate must be in [0, 1], got {self.max_duplicate_rate}")

    def chars(self, kind: str) -> tuple[int, int]:
        """(min, max) characters for a length kind: "text", "prompt" or "response"."""
        return getattr(self, f"min_{kind}_chars"), getattr(self, f"max_{kind}_chars")


@dataclass(frozen=True)
class Leak:
    """Values of ``column`` must not occur in ``reference`` ("<set>/<split>", same column)."""

    column: str
    reference: str
    splits: tuple[str, ...]  # splits of the owning set that are checked

    @property
    def helper(self) -> str:
        return f"{self.column}_in_{self.reference.replace('/', '_')}"


@dataclass(frozen=True)
class SetContract:
    """The data contract of one set; the GX suite of each split is built from it.

    ``columns`` maps every column to its JSON type as GX's type expectations name it
    ("str", "bool", "list"; a tuple means any of these). String columns without an
    allowed-value set must also contain a non-whitespace character.
    """

    splits: tuple[str, ...]
    columns: Mapping[str, str | tuple[str, ...]]
    nullable: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()  # columns a record may leave out (must be nullable too)
    lengths: Mapping[str, str] = field(default_factory=dict)  # column -> ValidationBounds.chars kind
    allowed: Mapping[str, str] = field(default_factory=dict)  # column -> ValidationBounds attribute
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # numeric column -> [lo, hi]
    duplicate_key: tuple[str, ...] = ()  # (near-)unique record key, for the duplicate rate
    # Columns whose values in a held-out split (val, test) must occur in no train split of any set with that column,
    # this one included (leaks_of): what a model trained on any train split must not have seen. A list column
    # (a ranking's responses) leaks when any of its elements does.
    held_out: tuple[str, ...] = ()
    rankings: bool = False  # list-valued ranking rules (helper columns), see _ranking_helpers
    bio_tags: bool = False  # per-character BIO tag rules (helper column), see _bio_helpers


CONTRACTS: dict[str, SetContract] = {
    "corpus": SetContract(
        splits=SPLITS,
        columns={"text": "str", "source": "str", "lang": "str"},
        lengths={"text": "text"},
        allowed={"lang": "languages"},
        duplicate_key=("text",),
        held_out=("text",),
    ),
    "sft": SetContract(
        splits=SPLITS,
        # messages: an imported chat, kept as turns (the template renders it at training); prompt/response
        # are its last user and assistant turns
        columns={"prompt": "str", "response": "str", "source": "str", "derived": "bool", "messages": "list"},
        nullable=frozenset({"messages"}),
        optional=frozenset({"messages"}),
        lengths={"prompt": "prompt", "response": "response"},
        duplicate_key=("prompt", "response"),
        held_out=("prompt",),
    ),
    "rankings": SetContract(
        splits=SPLITS,
        columns={
            "prompt": "str",
            "responses": "list",
            "ranking": "list",
            "annotator": "str",
            "source": "str",
            "derived": "bool",
            "agreement": ("float", "int"),  # JSON may write 1.0 as 1
            # per response, its raters' individual ratings (VADER: -4..4), for the split-half panel ceiling;
            # null or left out where there are none (label-derived and dashboard rankings)
            "ratings": "list",
        },
        nullable=frozenset({"agreement", "ratings"}),
        optional=frozenset({"ratings"}),
        lengths={"prompt": "prompt"},
        ranges={"agreement": (0.0, 1.0)},
        # The annotator is part of the key: one record per annotator is legitimate.
        duplicate_key=("prompt", "responses", "annotator"),
        held_out=("responses",),  # a ranking's prompt is its task ("Write a tweet."), shared across splits
        rankings=True,
    ),
    "classification": SetContract(
        splits=SPLITS,
        columns={"text": "str", "label": "str", "source": "str", "lang": "str"},
        lengths={"text": "text"},
        allowed={"label": "labels", "lang": "languages"},
        duplicate_key=("text",),
        held_out=("text",),
    ),
    "eval_prompts": SetContract(
        splits=("test",),
        columns={"prompt": "str", "source": "str", "lang": "str", "task": "str"},
        lengths={"prompt": "prompt"},
        allowed={"lang": "languages", "task": "eval_tasks"},
        duplicate_key=("prompt",),
        held_out=("prompt",),
    ),
    "ner": SetContract(
        splits=SPLITS,
        columns={"text": "str", "tags": "list", "source": "str"},
        lengths={"text": "text"},
        duplicate_key=("text",),
        held_out=("text",),
        bio_tags=True,
    ),
    # Prompts for RL rollouts (PPO/GRPO/RLOO), Ziegler et al.'s sentiment continuations: the first words of a real
    # text (prefix) in an instruction to continue it (prompt). A prompt's split is its text's split, so a held-out
    # prompt's text is in no train split either.
    "rollout_prompts": SetContract(
        splits=SPLITS,
        columns={"prompt": "str", "prefix": "str", "source": "str", "lang": "str"},
        lengths={"prompt": "prompt", "prefix": "prompt"},
        allowed={"lang": "languages"},
        duplicate_key=("prompt",),
        held_out=("prompt",),
    ),
}

SETS = tuple(CONTRACTS)
SET_SPLITS = {name: contract.splits for name, contract in CONTRACTS.items()}


def held_out_values(value: Any) -> tuple[str, ...]:
    """The strings of one `held_out` cell a leak check compares: a string itself, a list's strings."""
    if isinstance(value, str):
        return (value,)
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def leaks_of(set_name: str) -> tuple[Leak, ...]:
    """The leak checks of a set: each held-out split's values of every `held_out` column against the train split of
    every set with that column (the set's own included). Derived from CONTRACTS, so a set added there is checked
    against every other set, and every other set against it, without a line here."""
    contract = CONTRACTS[set_name]
    held_out = tuple(s for s in contract.splits if s != "train")
    if not held_out:
        return ()
    return tuple(
        Leak(column, f"{other}/train", held_out)
        for column in contract.held_out
        for other, other_contract in CONTRACTS.items()
        if "train" in other_contract.splits and column in other_contract.columns
    )

"""What a user reads is for them: the one place the CLI configures warnings and library logging.

Silenced, each for a reason: notices the libraries print on every run that the user cannot act on (Lightning's
device summary and tips, its note that frozen reference models are in eval mode, that a resumed stage's
checkpoint folder is not empty, that a DataLoader has few workers (the data is in memory); MLflow's hint to add
type hints to a model whose params schema a hint cannot carry) and deprecations raised inside libraries.
Everything else stays visible: warnings from alignops itself, and every library warning not listed here.
"""

from __future__ import annotations

import logging
import re
import warnings

# (message regex, why it is noise here)
NOTICES = (
    (r"(?s).*Add type hints to the `predict` method.*", "register_model declares the params schema itself"),
    (r"(?s).*module\(s\) in eval mode.*", "frozen reference and reward models are in eval mode on purpose"),
    (r"Checkpoint directory .* exists and is not empty.*", "a resumed stage writes where it stopped"),
    (r".*does not have many workers.*", "the datasets are tensors in memory: workers would only add copies"),
    (r".*`isinstance\(treespec, LeafSpec\)` is deprecated.*", "a deprecation inside Lightning"),
    (r".*The number of training batches .* is smaller than the logging interval.*", "tiny presets in CI"),
    (r".*You defined a `validation_step` but have no `val_dataloader`.*", "PPO validates by held-out rollouts"),
    (r"(?s).*Using ModelCheckpoint with manual optimization.*", "PPO checkpoints the state after each update"),
)
QUIET_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero", "alembic")
OUR_MODULES = r"^(?!alignops|models|flows|dashboard)"  # deprecations raised anywhere but in our own code


def configure() -> None:
    """Install the filters (idempotent: warnings.filterwarnings drops an identical filter before adding)."""
    for pattern, _why in NOTICES:
        warnings.filterwarnings("ignore", message=pattern)
    # MLflow wraps some calls in catch_warnings + simplefilter("once"), which overrides any filter: the notices
    # are also dropped where warnings are shown, which those wrappers leave in place.
    if not getattr(warnings.showwarning, "_alignops_quiet", False):
        warnings.showwarning = _without_notices(warnings.showwarning)
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=OUR_MODULES)
    # Prefect captures warnings into the "py.warnings" logger (logging.captureWarnings), replacing showwarning
    # after this ran: the same notices are dropped there
    warnings_logger = logging.getLogger("py.warnings")
    if not any(isinstance(f, _NoticeFilter) for f in warnings_logger.filters):
        warnings_logger.addFilter(_NoticeFilter())
    for name in QUIET_LOGGERS:  # "GPU available: False, used: False", "💡 Tip: ...", alembic's INFO lines
        logging.getLogger(name).setLevel(logging.WARNING)


_PATTERNS = [re.compile(pattern, re.IGNORECASE) for pattern, _why in NOTICES]


def _is_notice(text: str) -> bool:
    return any(p.search(text) for p in _PATTERNS)


class _NoticeFilter(logging.Filter):
    """Drops a captured warning (its record's message is the formatted warning) when it is one of the NOTICES."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _is_notice(record.getMessage())


def _without_notices(show):
    def showwarning(message, category, filename, lineno, file=None, line=None):
        if not _is_notice(str(message)):
            show(message, category, filename, lineno, file, line)

    showwarning._alignops_quiet = True
    return showwarning

"""What a served model accepts: the prompts and decoding params of one scoring request, checked before any
tokenizing. A bad request is an MlflowException with INVALID_PARAMETER_VALUE and the real reason (the scoring
server answers 400 with that message and no stack trace). An oversized prompt is not refused but cut cheaply, to
the end the context can hold, by Generator.complete: a refusal would echo it, since MLflow's scoring server
prefixes every error with the request's data.
"""

from __future__ import annotations

from typing import Any

MAX_PROMPTS = 256  # prompts per request: a batch decodes at once


def invalid(reason: str) -> Exception:
    """MLflow's INVALID_PARAMETER_VALUE (HTTP 400) carrying `reason` and no stack trace."""
    from mlflow.exceptions import MlflowException

    return MlflowException.invalid_parameter_value(reason)


def prompts(model_input: Any) -> list[str]:
    """The prompts of a request: a list of strings, or the "prompt" (else the only) column of a DataFrame."""
    if hasattr(model_input, "columns"):
        column = "prompt" if "prompt" in model_input.columns else model_input.columns[0]
        values = list(model_input[column])
    elif isinstance(model_input, str):
        values = [model_input]
    else:
        values = list(model_input)
    if not values:
        raise invalid('inputs is empty: send a list of prompt strings, e.g. {"inputs": ["Write a tweet."]}')
    if len(values) > MAX_PROMPTS:
        raise invalid(f"{len(values)} prompts in one request; send at most {MAX_PROMPTS} per request.")
    wrong = [(i, v) for i, v in enumerate(values) if not isinstance(v, str)]
    if wrong:
        shown = ", ".join(f"inputs[{i}] is {type(v).__name__} {str(v)[:40]!r}" for i, v in wrong[:5])
        raise invalid(f"every input must be a prompt string: {shown}.")
    return values


def decoding_config(params: dict[str, Any] | None) -> Any:
    """The GenerationConfig of a request's params; a value it refuses becomes INVALID_PARAMETER_VALUE."""
    from alignops.inference import decoding

    options = dict(params or {})
    strategy = options.pop("strategy", "greedy")
    try:
        return decoding(strategy, **options)
    except (ValueError, TypeError) as exc:
        raise invalid(f"params: {exc}") from None

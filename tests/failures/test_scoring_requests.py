"""Bad requests to the real scoring server (`alignops serve`): a 10 MB prompt is cut to the context before
tokenizing (it took 10 s and 2.8 GB, tokenized whole), non-string inputs are refused (they were coerced and
answered 200), and a decoding parameter out of range is INVALID_PARAMETER_VALUE with the reason, no stack trace."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from alignops import tracking
from alignops.inference import Generator, decoding
from tests.support import processes
from tests.test_serving import champion  # noqa: F401  (the fixture: a small registered champion)


def post(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_bad_requests_are_refused_with_the_reason(champion: Path, tmp_path: Path) -> None:  # noqa: F811
    with processes.alignops_serve("models:/served@champion", tmp_path / "server.log", tracking.tracking_uri()) as url:
        started = time.monotonic()
        code, body = post(url, {"inputs": ["x" * 10_000_000], "params": {"max_new_tokens": 4}})
        assert code == 200 and len(body["predictions"]) == 1, body
        assert time.monotonic() - started < 10  # cut to the context before tokenizing

        code, body = post(url, {"inputs": [5, None, {}]})
        assert code == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE", body
        assert "must be a prompt string" in body["message"] and "stack_trace" not in body

        for params, reason in [({"top_p": 2.0}, "top_p must be in (0, 1]"), ({"strategy": "magic"}, "magic"),
                               ({"max_new_tokens": 100000}, "leaves no room for a prompt")]:  # fmt: skip
            code, body = post(url, {"inputs": ["Say hi"], "params": params})
            assert code == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE", body
            assert reason in body["message"] and "stack_trace" not in body and "Traceback" not in body["message"]

        code, body = post(url, {"inputs": ["Say hi"], "params": {"max_new_tokens": 4}})
        assert code == 200 and len(body["predictions"]) == 1


def test_a_long_prompt_is_cut_before_tokenizing(champion: Path) -> None:  # noqa: F811
    """Same completion as for the prompt's end alone, and quick: the prompt is cut to what the context holds."""
    generator = Generator.from_dir(champion, device="cpu")
    tail = "the river is quiet at night " * 40
    config = dict(max_new_tokens=4)
    started = time.monotonic()
    long = generator.complete(["天地" * 2_000_000 + tail], decoding("greedy", **config))
    assert time.monotonic() - started < 5
    assert long == generator.complete([tail], decoding("greedy", **config))


@pytest.mark.parametrize("inputs", [[5, None, {}], [], ["ok", 3.5]])
def test_prompts_must_be_strings(inputs: list) -> None:
    from mlflow.exceptions import MlflowException

    from alignops.tracking import served_input

    with pytest.raises(MlflowException) as caught:
        served_input.prompts(inputs)
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"

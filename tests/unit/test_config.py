import pytest

from alignops.config import ConfigError, PipelineConfig, config_hash, list_presets, load_config


@pytest.mark.parametrize("preset", list_presets())
def test_every_preset_loads(preset: str) -> None:
    cfg = load_config(preset)
    assert isinstance(cfg, PipelineConfig)
    assert cfg.name == preset


def test_presets_exist() -> None:
    assert {"tiny", "small"} <= set(list_presets())


def test_presets_share_the_data_recipe() -> None:
    # One data version for every preset: data.dvc must not depend on the preset.
    assert {load_config(p).data for p in list_presets()} == {load_config("tiny").data}


def test_dotted_override_is_typed() -> None:
    cfg = load_config("tiny", ["tokenizer.vocab_size=1024", "data.val_fraction=0.1"])
    assert cfg.tokenizer.vocab_size == 1024
    assert cfg.data.val_fraction == 0.1


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("tokenizer.vocab_sise=10", "tokenizer.vocab_sise"),
        ("tokenizer.vocab_size=ten", "tokenizer.vocab_size"),
        ("data.val_fraction=0.9", "data.val_fraction"),
        ("novalue", "KEY=VALUE"),
        ("seed.x=1", "'seed' is a value"),
    ],
)
def test_bad_override_names_the_field(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        load_config("tiny", [override])


def test_unknown_preset_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match="tiny"):
        load_config("nope")


def test_config_hash_tracks_values_only() -> None:
    assert config_hash(load_config("tiny")) == config_hash(load_config("tiny"))
    assert config_hash(load_config("tiny")) != config_hash(load_config("tiny", ["seed=1"]))


def test_every_field_is_documented() -> None:
    def walk(model):
        for name, field in model.model_fields.items():
            assert field.description or hasattr(field.annotation, "model_fields"), f"{model.__name__}.{name}"
            if hasattr(field.annotation, "model_fields"):
                walk(field.annotation)

    walk(PipelineConfig)

"""Fast unit tests of rewards/: config validation, span label alignment, left truncation, the
Plackett-Luce loss. No model training here (see test_rewards_train.py)."""

from __future__ import annotations

import pytest

from rewards.config import ConfigError, TrainConfig


def test_config_round_trips_through_a_dict():
    config = TrainConfig(objective="listwise", epochs=2.0, batch_size=8)
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_config_from_form_strings_coerces_numbers():
    config = TrainConfig.from_dict({"batch_size": "8", "learning_rate": "1e-4", "epochs": 2})
    assert (config.batch_size, config.learning_rate, config.epochs) == (8, 1e-4, 2.0)


@pytest.mark.parametrize(
    "data, field",
    [
        ({"objectiv": "pairwise"}, "objectiv"),
        ({"batch_size": "many"}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
    ],
)
def test_config_from_dict_rejects_unknown_keys_and_bad_types(data, field):
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict(data)
    assert err.value.field == field


@pytest.mark.parametrize(
    "changes, field, words",
    [
        ({"objective": "pointwise"}, "objective", "unknown 'pointwise'"),
        ({"precision": "int8"}, "precision", "unknown"),
        ({"epochs": 0}, "epochs", "positive"),
        ({"learning_rate": -1e-5}, "learning_rate", "positive"),
        ({"batch_size": 0}, "batch_size", "positive"),
        ({"max_length": 4}, "max_length", "8..8192"),
        ({"eval_split": 1.0}, "eval_split", "[0, 1)"),
        ({"base_model": "/no/such/model"}, "base_model", "not a model folder"),
        ({"base_model": "not a hub id!"}, "base_model", "neither a local folder nor a hub id"),
    ],
)
def test_config_validate_names_the_bad_field(changes, field, words):
    with pytest.raises(ConfigError) as err:
        TrainConfig(**changes).validate()
    assert err.value.field == field
    assert words in str(err.value)


def test_default_config_validates_with_the_packaged_model():
    config = TrainConfig()
    config.validate()
    assert config.model_path().endswith("model")
    TrainConfig(base_model="sentence-transformers/all-MiniLM-L6-v2").validate()

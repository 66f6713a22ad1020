"""A ModelConfig is checked as a recipe's `model` section is, and a batch must hold the model's keys."""

from __future__ import annotations

import warnings

import pytest
import torch
from model_testkit import MODEL_NAMES, make_batch, small_config
from typer.testing import CliRunner

from fpar.cli import app
from fpar.config import ModelConfig
from fpar.errors import ConfigError, DataError
from fpar.models import build_model


@pytest.mark.parametrize(("options", "message"), [
    ({"num_classes": 0}, "model.num_classes must be at least 1, got 0"),
    ({"frames": 0}, "data.frames (model.frames) must be at least 1, got 0"),
    ({"flow_stack": -1}, "data.flow_stack (model.flow_stack) must be at least 1, got -1"),
    ({"image_size": 31}, "data.image_size (model.image_size) must be at least 32, got 31"),
    ({"image_size": 513}, "data.image_size (model.image_size) must be at most 512, got 513"),
    ({"mem_size": 2049}, "model.mem_size must be at most 2048, got 2049"),
    ({"frames": 129}, "data.frames (model.frames) must be at most 128, got 129"),
    ({"frames": "seven"}, "frames: Value 'seven' of type 'str' could not be converted to Integer"),
    ({"frames": 7.5}, "frames: Value '7.5' of type 'float' could not be converted to Integer"),
    ({"image_size": None}, "image_size: Incompatible value 'None'"),
])
def test_bad_model_config_is_a_config_error(options: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_model(ModelConfig(name="rgb", **options))
    assert message in str(info.value)


def test_a_value_the_recipe_check_converts_is_converted() -> None:
    """frames="7" passes a recipe as 7 (OmegaConf converts it); build_model agrees."""
    model = build_model(small_config("rgb", frames="7"))  # type: ignore[arg-type]
    with torch.no_grad():
        out = model(make_batch(small_config("rgb", frames=7), batch=1))
    assert out.logits.shape == (1, 5)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_runs_at_the_smallest_size(name: str) -> None:
    cfg = small_config(name, image_size=32)
    with torch.no_grad():
        out = build_model(cfg).eval()(make_batch(cfg, batch=1))
    assert out.logits.shape == (1, 5) and out.feature_maps.shape[-2:] == (1, 1)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_a_missing_batch_key_names_it_and_the_input_keys(name: str) -> None:
    cfg = small_config(name)
    model = build_model(cfg).eval()
    batch = make_batch(cfg, batch=1)
    key = next(iter(model.streams))
    del batch[key]
    with pytest.raises(DataError) as info:
        model(batch)
    message = str(info.value)
    assert message.startswith(f"batch has no {key!r} key: this model reads {', '.join(model.input_keys)} "
                              f"(model.input_keys)")
    assert "label" in message  # the keys the batch has


def test_models_verb_refuses_zero_classes_and_a_tiny_size() -> None:
    runner = CliRunner()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "Initializing zero-element tensors" must not be reached
        zero = runner.invoke(app, ["models", "--num-classes", "0"])
    assert zero.exit_code == 1 and isinstance(zero.exception, ConfigError)
    assert str(zero.exception) == "model.num_classes must be at least 1, got 0"
    tiny = runner.invoke(app, ["models", "--image-size", "16"])
    assert tiny.exit_code == 1 and "data.image_size (model.image_size) must be at least 32, got 16" in str(tiny.exception)


def test_models_help_says_which_sizes_are_meaningful() -> None:
    result = CliRunner().invoke(app, ["models", "--help"], terminal_width=200)
    text = " ".join(result.output.split())
    assert result.exit_code == 0 and "224 is the reference's" in text and "112 the demo's" in text
    assert "below 32 is an error" in text


def test_compiled_model_still_checks_batch_keys() -> None:
    cfg = small_config("rgb")
    compiled = torch.compile(build_model(cfg).eval(), backend="aot_eager")
    batch = make_batch(cfg, batch=1)
    with torch.no_grad():
        compiled(batch)
        with pytest.raises(DataError, match="batch has no 'rgb' key"):
            compiled({k: v for k, v in batch.items() if k != "rgb"})

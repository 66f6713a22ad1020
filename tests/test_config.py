"""Recipes: YAML + overrides into typed dataclasses; bad keys and types are errors, not defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fpar.config import DataConfig, ModelConfig, Recipe, StageConfig, from_dict, load_recipe, to_dict
from fpar.errors import ConfigError


def test_defaults_without_file() -> None:
    recipe = load_recipe()
    assert isinstance(recipe, Recipe)
    assert recipe.data.frames == 7 and recipe.data.test_user == "S2"
    assert recipe.stages == []


def test_yaml_and_overrides_merge_with_types(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        "data:\n  root: /x\n  frames: 5\nmodel:\n  name: flow\n"
        "stages:\n  - name: s1\n    trains: [lstm, classifier]\n    lr: 0.01\n"
    )
    recipe = load_recipe(path, ["data.frames=9", "train.alpha=0.5"])
    assert recipe.data.root == "/x"
    assert recipe.data.frames == 9  # override wins over the file
    assert recipe.model.name == "flow"
    assert recipe.train.alpha == 0.5
    assert recipe.stages[0].trains == ["lstm", "classifier"] and recipe.stages[0].lr == 0.01
    assert recipe.stages[0].epochs == 1  # stage defaults fill what the file leaves out


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["data.bogus=1"], "data.bogus"),
        (["data.frames=abc"], "data.frames"),
        (["nosuchsection.x=1"], "nosuchsection"),
    ],
)
def test_bad_override_names_the_key(overrides: list[str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_recipe(overrides=overrides)


def test_unknown_key_in_file_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  nmae: rgb\n")
    with pytest.raises(ConfigError) as info:
        load_recipe(path)
    assert str(path) in str(info.value) and "nmae" in str(info.value)


def test_unknown_key_in_stage_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("stages:\n  - name: s1\n    epochs: 3\n  - name: s2\n    epochz: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: stages\[1\] \(s2\)\.epochz: Key 'epochz' not in 'StageConfig'"):
        load_recipe(path)  # the stage is named: OmegaConf names only the key
    path.write_text("stages:\n  - name: ${nope}\n    epochz: 3\n")  # a name that does not resolve
    with pytest.raises(ConfigError, match=r"bad\.yaml: stages\[0\] \(\$\{nope\}\)\.epochz: Key 'epochz'"):
        load_recipe(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_dict_round_trip_keeps_values() -> None:
    cfg = ModelConfig(name="rgb_ms", num_classes=5, image_size=112)
    assert from_dict(ModelConfig, to_dict(cfg)) == cfg
    with pytest.raises(ConfigError):
        from_dict(DataConfig, {"frames": "many"})


def test_model_takes_n_l_and_image_size_from_data(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("data:\n  frames: 25\n  flow_stack: 3\n  image_size: 112\nmodel:\n  name: two_stream\n")
    recipe = load_recipe(path)
    assert (recipe.model.frames, recipe.model.flow_stack, recipe.model.image_size) == (25, 3, 112)
    recipe = load_recipe(path, ["data.frames=9", "model.frames=9"])  # the same value twice is allowed
    assert recipe.model.frames == 9


@pytest.mark.parametrize("key", ["frames", "flow_stack", "image_size"])
def test_model_value_that_disagrees_with_data_names_both_keys(tmp_path: Path, key: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(f"data:\n  {key}: 112\nmodel:\n  {key}: 224\n")
    with pytest.raises(ConfigError, match=f"model.{key} .*data.{key}") as info:
        load_recipe(path)
    assert str(path) in str(info.value)
    with pytest.raises(ConfigError, match=f"model.{key} .*data.{key}"):
        load_recipe(overrides=[f"model.{key}=3"])


def test_resize_defaults_to_eight_sevenths_of_the_image_size() -> None:
    assert DataConfig().resize is None
    assert DataConfig().resize_side() == 256
    assert DataConfig(image_size=112).resize_side() == 128
    assert DataConfig(image_size=112, resize=160).resize_side() == 160
    assert load_recipe(overrides=["data.image_size=112"]).data.resize_side() == 128


@pytest.mark.parametrize("item", ["data.frames", "model", ""])
def test_an_override_without_equals_is_named(item: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_recipe(overrides=["data.flow_stack=3", item])
    assert str(info.value) == f"override {item!r}: expected key=value"


@pytest.mark.parametrize("text, fragment", [("::: [\n", "not a YAML recipe"),
                                            ("- a\n- b\n", "a recipe is a YAML mapping")])
def test_a_file_that_is_not_a_yaml_mapping_names_the_file(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"^{path}: {fragment}"):
        load_recipe(path)


def test_an_override_reaches_a_key_inside_a_stage(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("stages:\n  - name: s1\n    lr: 0.1\n  - name: s2\n")
    recipe = load_recipe(path, ["stages.1.init_from=[runs/a:stage1]", "stages.0.lr=0.5"])
    assert recipe.stages[1].init_from == ["runs/a:stage1"] and recipe.stages[0].lr == 0.5
    assert recipe.stages[0].init_from == [] and recipe.stages[1].lr == StageConfig().lr


@pytest.mark.parametrize("item, fragment", [("stages.2.lr=1", "the recipe has 2 stage"),
                                            ("stages.0.nokey=1", "nokey"),
                                            ("datax.frames=3", "unknown section 'datax'")])
def test_a_bad_stage_override_names_the_override(tmp_path: Path, item: str, fragment: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("stages:\n  - name: s1\n  - name: s2\n")
    with pytest.raises(ConfigError, match=rf"^override '{re.escape(item)}': .*{fragment}"):
        load_recipe(path, [item])


def test_on_and_off_stay_words_in_a_file_and_in_overrides(tmp_path: Path) -> None:
    """YAML 1.1 reads on/off as booleans, which a str option would get as "True"/"False"."""
    path = tmp_path / "r.yaml"
    path.write_text("data:\n  frame_cache: off\ntrain:\n  cuda_graphs: on\n")
    recipe = load_recipe(path)
    assert (recipe.data.frame_cache, recipe.train.cuda_graphs, recipe.train.amp) == ("off", "on", "off")
    recipe = load_recipe(path, ["train.amp=off", "train.cuda_graphs=off", "data.frame_cache=on"])
    assert (recipe.data.frame_cache, recipe.train.cuda_graphs, recipe.train.amp) == ("auto", "off", "off")
    assert load_recipe(None, ["train.amp=on"]).train.amp == "on"  # not a mode: pick_device names the choices

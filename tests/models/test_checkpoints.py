"""Checkpoints rebuild their model alone; bad and unsafe files are refused with CheckpointError."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from model_testkit import NUM_CLASSES, RunsCode, make_batch, small_config

from fpar import __version__
from fpar.errors import CheckpointError
from fpar.models import CheckpointMeta, build_model, load_model, read_checkpoint, save_checkpoint
from fpar.models.checkpoints import load_partial_state

NORMALIZATION = {"rgb": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}
CLASSES = [f"verb_{i}" for i in range(NUM_CLASSES)]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    cfg = small_config("rgb_ms", weights="imagenet")  # rebuilding must not need ImageNet weights
    model = build_model(small_config("rgb_ms")).eval()
    path = tmp_path_factory.mktemp("ckpt") / "run" / "best.pt"
    save_checkpoint(path, model, CheckpointMeta(cfg, CLASSES, NORMALIZATION), extra={"epoch": 3})
    return path, model


def test_round_trip_rebuilds_the_model_from_the_file_alone(saved: tuple[Path, torch.nn.Module]) -> None:
    path, model = saved
    loaded, meta = load_model(path)
    assert not loaded.training
    assert (meta.model_name, meta.class_names, meta.fpar_version) == ("rgb_ms", CLASSES, __version__)
    assert (meta.image_size, meta.frames, meta.flow_stack) == (64, 2, 2)
    assert meta.normalization == NORMALIZATION
    assert read_checkpoint(path).extra == {"epoch": 3}
    batch = make_batch(meta.config)
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch).logits, model(batch).logits)


def test_truncated_file_is_refused(saved: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    data = saved[0].read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt: cannot read checkpoint; the file is truncated"):
        load_model(cut)


@pytest.mark.parametrize("content", ["text", "state_dict"])
def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "other.pt"
    if content == "text":
        path.write_text("class,label\ntake_cup,1\n")
    else:
        torch.save(build_model(small_config("flow")).state_dict(), path)
    expected = "other.pt: cannot read checkpoint; not a torch file" if content == "text" else "other.pt"
    with pytest.raises(CheckpointError, match=expected):
        load_model(path)


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_a_pickle_that_runs_code_is_refused_without_running(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pt"
    payload = {"format": "fpar-checkpoint", "state_dict": RunsCode(marker)}
    if writer == "pickle":
        path.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        torch.save(payload, path)
    with pytest.raises(CheckpointError, match="evil.pt: refused"):
        load_model(path)
    assert not marker.exists()


def test_weights_of_another_model_are_refused(saved: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    path = tmp_path / "renamed.pt"
    other = build_model(small_config("rgb"))
    save_checkpoint(path, other, CheckpointMeta(small_config("rgb_ms"), CLASSES, NORMALIZATION))
    with pytest.raises(CheckpointError, match="renamed.pt: weights do not fit model 'rgb_ms'") as error:
        load_model(path)
    assert "\n" not in str(error.value) and "streams.rgb.ms_head.conv.weight" in str(error.value)


def test_class_names_must_match_the_classifier(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="2 class names"):
        save_checkpoint(tmp_path / "x.pt", build_model(small_config("flow")),
                        CheckpointMeta(small_config("flow"), ["a", "b"], NORMALIZATION))


def test_partial_load_reports_and_skips_a_head_of_another_size() -> None:
    """two_stream starts from an rgb run: the streams load by name, the classifier does not fit."""
    rgb = build_model(small_config("rgb"))
    joint = build_model(small_config("two_stream"))
    report = load_partial_state(joint, rgb.state_dict())
    assert report.unexpected == []
    assert report.mismatched == ["classifier.fc.weight"]
    assert all(k.startswith(("streams.flow.", "classifier.")) for k in report.missing)
    torch.testing.assert_close(joint.streams.rgb.lstm.x_convs.i.weight, rgb.streams.rgb.lstm.x_convs.i.weight)
    assert "shape mismatch: classifier.fc.weight" in str(report)


def test_a_header_without_its_model_name_is_refused(saved: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    payload = torch.load(saved[0], weights_only=True)
    del payload["model_name"]
    torch.save(payload, tmp_path / "headless.pt")
    with pytest.raises(CheckpointError, match="headless.pt: fpar checkpoint whose model name or class names disagree"):
        read_checkpoint(tmp_path / "headless.pt")


def _crafted(saved: Path, folder: Path, name: str, **changes: object) -> Path:
    """`saved`'s checkpoint with header entries replaced (a crafted file: checkpoints are untrusted)."""
    payload = torch.load(saved, weights_only=True)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(payload.get(key), dict) and key == "config":
            payload[key] = {**payload[key], **value}
        else:
            payload[key] = value
    torch.save(payload, folder / name)
    return folder / name


@pytest.mark.parametrize(("changes", "reason"), [
    ({"config": None}, "config is not a mapping of field names to plain values"),
    ({"config": {"weights": {"nested": 1}}}, "config is not a mapping of field names to plain values"),
    ({"config": {"weights": "${oc.env:HOME}"}}, r"config holds an interpolation \(\$\{...\}\)"),
    ({"class_names": "abcde"}, "class_names is not a list of strings"),
    ({"class_names": [1, 2, 3, 4, 5]}, "class_names is not a list of strings"),
    ({"normalization": {"rgb": {"mean": [0.5], "std": [0.0]}}}, "normalization of 'rgb' is not a mean and a positive std"),
    ({"normalization": {"rgb": {"mean": [0.5, 0.5], "std": [1, 1]}}}, "of 1 or 3 finite numbers"),
    ({"normalization": {"rgb": {"mean": [float("nan")], "std": [1.0]}}}, "normalization of 'rgb'"),
    ({"normalization": {"depth": {"mean": [0.5], "std": [1.0]}}}, r"input keys \(rgb, flow\)"),
    ({"normalization": {"rgb": {"mean": [10**400], "std": [1.0]}}}, "normalization of 'rgb'"),  # past float
    ({"extra": [1]}, r"extra is not a mapping"),
    ({"config": {"mem_size": 1_000_000}}, "model.mem_size must be at most 2048"),
])
def test_a_crafted_header_is_a_broken_header(saved: tuple[Path, torch.nn.Module], tmp_path: Path,
                                             changes: dict, reason: str) -> None:
    path = _crafted(saved[0], tmp_path, "crafted.pt", **changes)
    with pytest.raises(CheckpointError, match=rf"crafted\.pt: fpar checkpoint with a broken header \(.*{reason}"):
        load_model(path)


def test_weights_are_checked_against_shapes_before_a_model_is_allocated(
        saved: tuple[Path, torch.nn.Module], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a header asking for a large ConvLSTM must be refused without building it in memory
    import fpar.models.checkpoints as checkpoints

    devices = []

    def recording(cfg):  # the default device where the model would be built
        devices.append(torch.empty(0).device.type)
        return build_model(cfg)

    monkeypatch.setattr(checkpoints, "build_model", recording)
    path = _crafted(saved[0], tmp_path, "big.pt", config={"mem_size": 2048})
    with pytest.raises(CheckpointError, match=r"big\.pt: weights do not fit model 'rgb_ms': shape mismatch: "):
        load_model(path)
    assert devices == ["meta"]
    load_model(saved[0])
    assert devices == ["meta", "meta", "cpu"]


def test_a_model_input_without_normalization_is_refused(saved: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    path = _crafted(saved[0], tmp_path, "plain.pt", normalization={})
    assert read_checkpoint(path).meta.normalization == {}  # the header alone is well formed
    with pytest.raises(CheckpointError, match=r"plain\.pt: fpar checkpoint with a broken header \(no normalization "
                                              r"for rgb, which model 'rgb_ms' reads\)"):
        load_model(path)


def test_a_checkpoint_with_compressed_entries_is_refused(saved: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    # torch.load inflates deflated entries to any size they claim; torch.save never writes them
    import zipfile

    packed = tmp_path / "packed.pt"
    with zipfile.ZipFile(saved[0]) as source, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as target:
        for entry in source.infolist():
            target.writestr(entry.filename, source.read(entry))
    with pytest.raises(CheckpointError, match=r"packed\.pt: refused as checkpoint: \d+ compressed entries"):
        read_checkpoint(packed)
    assert read_checkpoint(saved[0]).meta.model_name == "rgb_ms"


def test_a_run_folder_given_as_a_checkpoint_points_at_its_checkpoint(saved: tuple[Path, torch.nn.Module],
                                                                     tmp_path: Path) -> None:
    run = saved[0].parent  # holds best.pt
    with pytest.raises(CheckpointError, match=rf"^{run}: a folder, not the checkpoint file; its best\.pt\?$"):
        load_model(run)
    with pytest.raises(CheckpointError, match=rf"^{tmp_path}: a folder, not the checkpoint file$"):
        load_model(tmp_path)

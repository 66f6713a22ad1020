"""`fpar models` lists the registry with parameter counts."""

from __future__ import annotations

from typer.testing import CliRunner

from fpar.cli import app
from fpar.models import list_models


def test_models_lists_every_model_with_its_parameter_count() -> None:
    result = CliRunner().invoke(app, ["models"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for name in list_models():
        assert name in result.output
    assert "40,705,381" in result.output  # rgb: ResNet-34 + ConvLSTM 512 + fc 512 -> 61

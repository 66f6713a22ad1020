"""Model name -> builder, timm style: each model module registers plain builder functions.

A builder takes the ModelConfig and composes parts; there is no `type=` indirection and no
inheritance between models. The five names are those of DESIGN section 2.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from fpar.config import ModelConfig, check_model_config
from fpar.errors import ConfigError

Builder = Callable[[ModelConfig], nn.Module]
_BUILDERS: dict[str, Builder] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator: register `builder` under `name` (names are unique)."""

    def register(builder: Builder) -> Builder:
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is registered twice")
        _BUILDERS[name] = builder
        return builder

    return register


def list_models() -> list[str]:
    """Registered names, in registration order."""
    return list(_BUILDERS)


def model_description(name: str) -> str:
    """The first line of the builder's docstring (for `fpar models`)."""
    return (_BUILDERS[name].__doc__ or "").strip().splitlines()[0]


def build_model(cfg: ModelConfig) -> nn.Module:
    """Build the registered model `cfg.name`; an unknown name is a ConfigError listing the known.

    `cfg` is first checked as a recipe's `model` section is (`config.check_model_config`): a
    value of the wrong type, fewer than 1 class / frame / flow, or image_size < 32 is a ConfigError.
    """
    cfg = check_model_config(cfg)
    if cfg.name not in _BUILDERS:
        raise ConfigError(f"model.name {cfg.name!r}: unknown model; registered: {', '.join(_BUILDERS)}")
    return _BUILDERS[cfg.name](cfg)

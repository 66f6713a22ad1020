"""What a prepare run is asked to do: the settings that shape its files, and the shard it takes."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fpar.data.layout import PREPARE_SETTINGS_NAME
from fpar.errors import DataError, one_line
from fpar.io.atomic import write_atomic
from fpar.io.video import Size
from fpar.options import DEFAULT_FLOW, DEFAULT_FRAME_SIZE, check_flow_method
from fpar.prepare.flow import DEFAULT_BOUND
from fpar.prepare.motion_maps import MotionRule


@dataclass(frozen=True)
class PrepareSettings:
    """Everything that changes the files written; a root keeps the settings it was made with.

    ``warp=False`` writes plain flow, and motion maps from it (for comparison: under camera motion
    they mark the background too).
    """

    size: Size | None = DEFAULT_FRAME_SIZE
    flow: str = DEFAULT_FLOW
    bound: float = DEFAULT_BOUND
    warp: bool = True
    hand_masks: Path | None = None
    motion: MotionRule = field(default_factory=MotionRule)

    def __post_init__(self) -> None:
        check_flow_method(self.flow)
        if self.bound <= 0:
            raise DataError(f"flow bound must be > 0, got {self.bound}")
        if self.hand_masks is not None and not Path(self.hand_masks).is_dir():
            raise DataError(f"{self.hand_masks}: hand-mask folder not found")

    def to_json(self) -> dict:
        return {"size": list(self.size) if self.size else None, "flow": self.flow, "bound": self.bound,
                "warp": self.warp, "hand_masks": str(self.hand_masks) if self.hand_masks else None,
                "motion": asdict(self.motion)}

    @classmethod
    def from_json(cls, data: dict) -> PrepareSettings:
        return cls(size=tuple(data["size"]) if data["size"] else None, flow=data["flow"],
                   bound=data["bound"], warp=data["warp"],
                   hand_masks=Path(data["hand_masks"]) if data["hand_masks"] else None,
                   motion=MotionRule(**data["motion"]))


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` (1-based K of N) -> (1, 4): this run takes videos i with ``i % 4 == 1``."""
    k, _, n = text.partition("/")
    if not (f"{k}{n}".isascii() and k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise DataError(f"shard must be K/N with 1 <= K <= N, got {text!r}")
    return int(k) - 1, int(n)


def shard_tag(shard: tuple[int, int]) -> str:
    """(1, 4) -> "2of4": how lock and work-folder names tell shards apart."""
    return f"{shard[0] + 1}of{shard[1]}"


def load_settings(root: Path) -> PrepareSettings | None:
    path = Path(root) / PREPARE_SETTINGS_NAME
    if not path.is_file():
        return None
    try:
        return PrepareSettings.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise DataError(f"{path}: unreadable prepare settings ({one_line(exc)}); delete it to start "
                        f"over") from exc


def make_root(root: Path) -> None:
    """Create the output folder; DataError when `root` is a file or cannot be created."""
    if root.exists() and not root.is_dir():
        raise DataError(f"{root}: --out must be a folder (new or prepared before), but this is a file")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{root}: cannot create the output folder ({exc.strerror or exc})") from exc


def claim_root(root: Path, settings: PrepareSettings) -> None:
    """Record the settings in a new root; refuse to mix settings in an existing one."""
    previous = load_settings(root)
    if previous is None:
        write_atomic(root / PREPARE_SETTINGS_NAME, json.dumps(settings.to_json(), indent=2) + "\n")
    elif previous.to_json() != settings.to_json():
        old, new = previous.to_json(), settings.to_json()
        changed = [f"{k}: root has {_setting(old[k])}, this run asks {_setting(v)}" for k, v in new.items()
                   if old[k] != v]
        raise DataError(f"{root / PREPARE_SETTINGS_NAME}: this root was prepared with other settings "
                        f"({'; '.join(changed)}); use a new --out folder or delete this one")


def _setting(value: object) -> str:
    """A setting as the user gives it: 320x240, dis, none."""
    if isinstance(value, list) and len(value) == 2:
        return f"{value[0]}x{value[1]}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return "native" if value is None else str(value)

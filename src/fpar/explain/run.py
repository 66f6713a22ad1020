"""`fpar cam` end to end: checkpoints + an input file -> CAM picture files.

One checkpoint gives that model's CAM; several (`--compare`) give the same frames with each
model's CAM side by side. An image gives one PNG; a video gives an H.264 mp4 of every frame and
a contact sheet PNG of the sampled frames beside it (`<out stem>_sheet.png`).
"""

from __future__ import annotations

from pathlib import Path

from fpar.errors import ConfigError
from fpar.explain.cam import CamResult, Progress, explain, label_checkpoints
from fpar.explain.limits import Limits
from fpar.explain.media import Media, read_media
from fpar.explain.render import DEFAULT_ALPHA, write_cam_image, write_cam_sheet, write_cam_video
from fpar.models.checkpoints import load_model
from fpar.options import DEFAULT_FRAME_SIZE, Size

IMAGE_OUTPUTS = (".png", ".jpg", ".jpeg")


def sheet_path(out: Path) -> Path:
    """Where a video's contact sheet goes: beside the video, `<stem>_sheet.png`."""
    return out.with_name(f"{out.stem}_sheet.png")


def check_output(out: Path, media: Media) -> None:
    """An image input writes a picture (.png/.jpg), a video input an .mp4; ConfigError otherwise."""
    suffix = out.suffix.lower()
    if media.is_video and suffix != ".mp4":
        raise ConfigError(f"--out {out}: a video input gives an H.264 video; name it {out.stem}.mp4")
    if not media.is_video and suffix not in IMAGE_OUTPUTS:
        raise ConfigError(f"--out {out}: an image input gives a picture; name it {out.stem}.png")


def write_outputs(out: Path, media: Media, results: list[CamResult], alpha: float = DEFAULT_ALPHA) -> list[Path]:
    """The files of `results` on `media`: the picture, or the video and its contact sheet."""
    check_output(out, media)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not media.is_video:
        return [write_cam_image(out, media, results, alpha)]
    return [write_cam_video(out, media, results, alpha), write_cam_sheet(sheet_path(out), media, results, alpha)]


def run_cam(checkpoints: list[Path], source: Path, out: Path, method: str = "gradcam",
            alpha: float = DEFAULT_ALPHA, limits: Limits = Limits(), flow_size: Size | None = DEFAULT_FRAME_SIZE,
            progress: Progress | None = None) -> tuple[list[CamResult], list[Path]]:
    """Read `source`, explain it with each checkpoint's model, write the pictures to `out`."""
    if not 0 <= alpha <= 1:
        raise ConfigError(f"--alpha {alpha}: the heat map's opacity must be between 0 and 1")
    media = read_media(source, limits)
    check_output(out, media)
    loaded = [load_model(path) for path in checkpoints]
    labels = label_checkpoints(checkpoints, [meta for _, meta in loaded])
    results = [explain(model, meta, media, method, label, flow_size, progress)
               for (model, meta), label in zip(loaded, labels)]
    return results, write_outputs(out, media, results, alpha)

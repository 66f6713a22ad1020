"""The Streamlit page of `fpar app`: upload an image or a video, pick 1-4 models, compare their CAMs.

Uploads are untrusted: they are checked for size and suffix, written into a fresh temporary folder
as `upload<suffix>` (their own name, which may be any length or text, appears only in messages), read by `fpar.explain.media.read_media` (which refuses anything that is not
a readable image or video within the limits), and the folder is deleted when the page is done
with it. Any such refusal is an error message in the page; the page keeps working.

Caching: models by checkpoint file (`st.cache_resource`), each model's result by upload content,
checkpoint and method (a store in `st.cache_resource`), its picture also by opacity
(`st.cache_data`), so adding or removing a model only computes the new one.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import streamlit as st

from fpar.app.catalog import Entry, find_checkpoints
from fpar.app.launch import settings_from_env
from fpar.errors import DataError, FparError, one_line
from fpar.explain.cam import METHODS, CamResult, explain
from fpar.explain.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES, Media, media_kind, read_media
from fpar.explain.render import DEFAULT_ALPHA, write_cam_image, write_cam_video
from fpar.models.checkpoints import load_model

MAX_MODELS = 4
MAX_RESULTS = 32
NO_CHECKPOINT = ("No checkpoint found under `{runs}`. Train one on the demo's data (`make demo` prepares it), "
                 "e.g. `fpar train configs/demo/rgb.yaml --out {runs}/train/rgb`, or convert Ego-RNN's published "
                 "weights with "
                 "`fpar import-egornn WEIGHTS --model rgb --out {runs}/egornn_rgb.pt`, then reload this page.")


@st.cache_resource(max_entries=8)
def cached_model(path: str, modified: float):
    """The model and meta of a checkpoint file (reloaded when the file changes)."""
    return load_model(path)


@st.cache_data(max_entries=32, show_spinner=False)
def cached_catalog(runs: str, stamp: tuple) -> tuple[list[Entry], list[str]]:
    return find_checkpoints(Path(runs))


@st.cache_resource
def result_store() -> OrderedDict:
    """Results by (upload digest, checkpoint, its mtime, method), shared by all sessions.

    A plain store in `st.cache_resource` rather than `st.cache_data` on the computation: the
    computation draws the page's progress bar, which `st.cache_data` cannot replay."""
    return OrderedDict()


def cached_result(key: tuple, compute: Callable[[], CamResult]) -> CamResult:
    """The stored result for `key`, or `compute()` stored (the oldest of MAX_RESULTS dropped)."""
    store = result_store()
    if key not in store:
        store[key] = compute()
        while len(store) > MAX_RESULTS:
            store.popitem(last=False)
    store.move_to_end(key)
    return store[key]


@st.cache_data(max_entries=64, show_spinner=False)
def cached_picture(digest: str, path: str, modified: float, method: str, alpha: float, _result: CamResult,
                   _media: Media, _folder: Path) -> bytes:
    """The CAM video (mp4) of a video, or the CAM picture (PNG) of an image, as bytes."""
    out = _folder / f"{Path(path).parent.name}-{Path(path).stem}.{'mp4' if _media.is_video else 'png'}"
    write = write_cam_video if _media.is_video else write_cam_image
    return write(out, _media, [_result], alpha).read_bytes()


def runs_stamp(runs: Path) -> tuple:
    """Changes when a checkpoint appears, disappears or is rewritten (refreshes the list); a file
    that cannot be read (a dangling link) is left to the catalog, which lists it as skipped."""
    stamps = []
    for path in runs.rglob("*.pt") if runs.is_dir() else ():
        try:
            stamps.append((str(path), path.stat().st_mtime))
        except OSError:
            stamps.append((str(path), None))
    return tuple(sorted(stamps, key=lambda stamp: stamp[0]))


def plain(text: str) -> str:
    """`text` (a class name, a file name, a message quoting them: untrusted) shown as it is in
    markdown, which st.markdown, st.table and st.error all render: every ASCII punctuation mark
    escaped, so it can neither format nor fetch (`![](url)` would load an address in viewers' browsers)."""
    return re.sub(r"([!-/:-@\[-`{-~])", r"\\\1", text)


def show_result(entry_label: str, result: CamResult, picture: bytes, is_video: bool, name: str) -> None:
    st.markdown(f"**{plain(entry_label)}**")
    st.markdown(f"Predicted: **{plain(result.predicted)}** ({result.probabilities[result.target]:.1%})")
    st.table({"class": [plain(c) for c, _ in result.top(5)], "probability": [f"{p:.1%}" for _, p in result.top(5)]})
    if is_video:
        st.video(picture, format="video/mp4", autoplay=True, muted=True, loop=True)
    else:
        st.image(picture, caption=f"{result.method} CAM")
    st.download_button("Download", picture, file_name=name, mime="video/mp4" if is_video else "image/png",
                       key=f"download-{entry_label}")


def run_models(upload, entries: list[Entry], labels: list[str], method: str, alpha: float, settings) -> None:
    """Save the upload in a temporary folder, explain it with each model, show the results side by side.

    The upload lies in a folder of its own: a CAM output named like it (an upload called
    `rgb-best.mp4`) must not replace it while a flow model still decodes it.
    """
    data = upload.getvalue()
    if len(data) > settings.limits.max_megabytes * 1e6:
        raise DataError(f"{upload.name}: {len(data) / 1e6:.0f} MB is over the limit of "
                        f"{settings.limits.max_megabytes:g} MB")
    media_kind(Path(upload.name))  # a suffix fpar reads (the uploader's own check is the browser's)
    digest = hashlib.sha1(data).hexdigest()
    with tempfile.TemporaryDirectory(prefix="fpar-app-") as folder:
        source = Path(folder) / "upload" / f"upload{Path(upload.name).suffix.lower()}"
        try:
            source.parent.mkdir()
            source.write_bytes(data)
            media = read_media(source, settings.limits)
            bar = st.progress(0.0, text="starting")
            results = []
            for i, entry in enumerate(entries):
                def progress(what: str, done: int, total: int, i: int = i, label: str = labels[i]) -> None:
                    bar.progress(min(1.0, (i + done / max(total, 1)) / len(entries)), text=plain(f"{label}: {what}"))

                modified = checkpoint_time(entry.path)
                model, meta = cached_model(str(entry.path), modified)
                result = cached_result((digest, str(entry.path), modified, method, labels[i]),
                                       lambda: explain(model, meta, media, method, labels[i], progress=progress))
                picture = cached_picture(digest, str(entry.path), modified, method, alpha, result, media,
                                         Path(folder))
                results.append((result, picture))
            bar.empty()
        except FparError as exc:
            message = one_line(exc).replace(str(source), upload.name)
            raise DataError(message.replace(f"{folder}/", "")) from exc
    suffix = "mp4" if media.is_video else "png"
    for column, label, (result, picture) in zip(st.columns(len(results)), labels, results):
        with column:
            show_result(label, result, picture, media.is_video, f"cam-{result.label}.{suffix}")


def checkpoint_time(path: Path) -> float:
    """`path`'s modification time; a DataError when it went away since the list was made."""
    try:
        return path.stat().st_mtime
    except OSError as exc:
        raise DataError(f"{path}: checkpoint no longer readable ({one_line(exc)}); reload the page") from exc


def main() -> None:
    st.set_page_config(page_title="fpar CAM", layout="wide")
    st.title("fpar: class activation maps")
    settings = settings_from_env()
    runs = settings.runs
    entries, skipped = cached_catalog(str(runs), runs_stamp(runs))
    for line in skipped:
        st.sidebar.warning(f"skipped {plain(line)}")
    if not entries:
        st.info(NO_CHECKPOINT.format(runs=runs))
        return
    labels = {entry.label(runs): entry for entry in entries}
    chosen = st.multiselect(f"Models (1 to {MAX_MODELS}) from `{runs}`", list(labels),
                            default=list(labels)[:min(2, len(labels))], max_selections=MAX_MODELS)
    method = st.radio("Map", METHODS, index=METHODS.index("gradcam"), horizontal=True,
                      help="attention: the RGB models' own spatial attention; gradcam / gradcam++: any model")
    alpha = st.slider("Heat-map opacity", 0.0, 1.0, DEFAULT_ALPHA, 0.05)
    accepted = [s.lstrip(".") for s in IMAGE_SUFFIXES + VIDEO_SUFFIXES]
    upload = st.file_uploader(f"Image or video (at most {settings.limits.max_megabytes:g} MB, "
                              f"{settings.limits.max_frames} frames)", type=accepted)
    if not chosen:
        st.warning("Choose at least one model.")
        return
    if upload is None:
        st.caption("Upload an image or a video to see each model's prediction and its CAM side by side.")
        return
    picked = [labels[label] for label in chosen]
    names = [entry.model_name for entry in picked]
    try:
        run_models(upload, picked, names if len(set(names)) == len(names) else chosen, method, alpha, settings)
    except FparError as exc:
        st.error(plain(one_line(exc)))


main()

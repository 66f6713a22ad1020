"""GTEA61's processed layouts: the one module that knows dataset folder and file names.

Two layouts are read:

* ``course`` (the layout with motion maps, what ``fpar prepare`` writes)::

      processed_frames2/<user>/<class>/<instance>/rgb/rgb0001.png
      processed_frames2/<user>/<class>/<instance>/mmaps/map0001.png
      flow_x_processed/<user>/<class>/<instance>/flow_x_00001.png
      flow_y_processed/<user>/<class>/<instance>/flow_y_00001.png

* ``egornn`` (Ego-RNN's ``prepareGTEA61Dataset.py`` output and denseflow's flow)::

      frames/<user>/<class>/<instance>/image_00000.jpg
      flow_x/<user>/<class>/<instance>/flow_x_00001.jpg
      flow_y/<user>/<class>/<instance>/flow_y_00001.jpg

Everything outside this module speaks of *positions*, never file numbers: a sample's frames are
positions 0..n-1 over its frame files sorted by number; flow k goes from frame k to frame k+1;
motion map k belongs to frame k. Reading goes through the sorted file lists, so a layout's first
number (0 or 1) only matters when writing or checking names, and `Layout` is the one place that
applies it (`Layout.path` for writers, `Layout.numbering_gap` for `fpar data check`).
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fpar.errors import DataError

MODALITIES = ("rgb", "flow_x", "flow_y", "mmaps")
MANIFEST_NAME = "manifest.csv"
LABELS_NAME = "labels.csv"
# manifest.csv, one row a sample: counts, status ("ok" / "failed") and the source it came from
MANIFEST_COLUMNS = ("user", "class", "instance", "frames", "flows", "status", "error", "video", "start", "end",
                    "video_bytes", "video_mtime_ns", "video_sha1")  # the video's identity: a changed one is redone
PREPARE_SETTINGS_NAME = "prepare.json"  # the options a root was prepared with (resume must match)
QUALITY_NAME = "quality.json"  # scores of `fpar prepare --evaluate` in a prepared root
# While `fpar prepare` runs (all gone from a finished root):
MANIFEST_JOURNAL_NAME = ".manifest.journal"  # rows appended as samples finish; folded into manifest.csv
MANIFEST_LOCK_NAME = ".manifest.lock"  # runs and workers take turns with the journal and manifest.csv
RUN_LOCK_NAME = ".prepare-{shard}.lock"  # one run per root and shard ("1of4"); holds the run's PID
PREPARE_TEMP_NAME = ".tmp"  # ROOT/.tmp/<run id>/: one run's work folders, renamed into place when complete
RUN_ID = "{shard}.{pid}"  # a run's work folder in PREPARE_TEMP_NAME: its shard and main process
WORKERS_LOCK_NAME = ".workers.lock"  # in a run's work folder: held (shared) by each of its live processes
# `--hand-masks DIR`: DIR/<video stem>/<frame index counted from 0>.png, e.g. 0003.png or 3.png
HAND_MASK_PATTERN = re.compile(r"(\d+)\.png")
# `fpar synth` output: OUT/labels.csv, OUT/videos/<id>.mp4, OUT/gt/<id>.npz
SYNTH_VIDEOS_DIR = "videos"
SYNTH_GT_DIR = "gt"
# `fpar demo --out OUT`: OUT/synth/ (fpar synth), OUT/prepared/ (fpar prepare), the contact sheet;
# `fpar reproduce --videos V --out OUT` prepares V into OUT/prepared/ too
DEMO_SYNTH_DIR = "synth"
PREPARED_DIR = "prepared"
DEMO_CONTACT_SHEET_NAME = "synth_contact_sheet.png"
# Motion maps (and hand masks) are 8-bit grayscale: 255 moving (or masked), 0 not; a pixel counts as
# moving where its value is above this, which also survives a resize with interpolation.
MAP_THRESHOLD = 127


@dataclass(frozen=True)
class FileSpec:
    """Where one modality lives: top folder, optional folder inside the instance, file pattern."""

    top: str
    inner: str  # sub-folder inside the instance folder ("" when the files sit in it directly)
    prefix: str
    digits: int
    suffix: str
    first: int  # the number written for position 0

    def name(self, position: int) -> str:
        return f"{self.prefix}{position + self.first:0{self.digits}d}{self.suffix}"

    def number_of(self, file_name: str) -> int | None:
        """The frame number in a file name of this pattern, or None if the name does not match."""
        match = re.fullmatch(rf"{re.escape(self.prefix)}(\d+){re.escape(self.suffix)}", file_name)
        return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Layout:
    """A processed layout: one FileSpec per modality it holds."""

    name: str
    specs: dict[str, FileSpec]

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if m in self.specs)

    def instance_dir(self, root: Path, modality: str, user: str, label: str, instance: str) -> Path:
        spec = self._spec(modality)
        folder = Path(root) / spec.top / user / label / instance
        return folder / spec.inner if spec.inner else folder

    def path(self, root: Path, modality: str, user: str, label: str, instance: str, position: int) -> Path:
        """The file that holds `position` of a modality, as a writer must name it."""
        if position < 0:
            raise ValueError(f"position must be >= 0, got {position}")
        spec = self._spec(modality)
        return self.instance_dir(root, modality, user, label, instance) / spec.name(position)

    def sample_roots(self, root: Path, user: str, label: str, instance: str) -> list[Path]:
        """The instance folders a sample owns, one per top folder (what a writer renames into place)."""
        tops = dict.fromkeys(spec.top for spec in self.specs.values())
        return [Path(root) / top / user / label / instance for top in tops]

    def numbering_gap(self, modality: str, files: Sequence[Path]) -> str | None:
        """What breaks the consecutive numbering of a modality's files (in number order, as
        `discover` lists them): "<first missing file name> is missing", "a number is repeated",
        or None when consecutive. Positions after a gap would name the wrong files."""
        spec = self._spec(modality)
        numbers = [spec.number_of(Path(f).name) for f in files]
        if not numbers or numbers == list(range(numbers[0], numbers[0] + len(numbers))):
            return None
        missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
        return f"{spec.name(missing[0] - spec.first)} is missing" if missing else "a number is repeated"

    def _spec(self, modality: str) -> FileSpec:
        if modality not in self.specs:
            raise DataError(f"the {self.name} layout has no {modality!r} modality")
        return self.specs[modality]


COURSE = Layout(
    "course",
    {
        "rgb": FileSpec("processed_frames2", "rgb", "rgb", 4, ".png", 1),
        "mmaps": FileSpec("processed_frames2", "mmaps", "map", 4, ".png", 1),
        "flow_x": FileSpec("flow_x_processed", "", "flow_x_", 5, ".png", 1),
        "flow_y": FileSpec("flow_y_processed", "", "flow_y_", 5, ".png", 1),
    },
)
EGORNN = Layout(
    "egornn",
    {
        "rgb": FileSpec("frames", "", "image_", 5, ".jpg", 0),
        "flow_x": FileSpec("flow_x", "", "flow_x_", 5, ".jpg", 1),
        "flow_y": FileSpec("flow_y", "", "flow_y_", 5, ".jpg", 1),
    },
)
LAYOUTS = {layout.name: layout for layout in (COURSE, EGORNN)}


def detect_layout(root: str | Path, name: str = "auto") -> Layout:
    """The layout of a dataset root: named explicitly, or found by its top folders."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset root not found (or not a folder)")
    if name != "auto":
        if name not in LAYOUTS:
            raise DataError(f"unknown layout {name!r}; choose one of auto, {', '.join(LAYOUTS)}")
        return LAYOUTS[name]
    for layout in LAYOUTS.values():
        if (root / layout.specs["rgb"].top).is_dir():
            return layout
    wanted = " or ".join(f"'{layout.specs['rgb'].top}/'" for layout in LAYOUTS.values())
    raw = (root / LABELS_NAME).is_file()
    hint = f" (it has {LABELS_NAME}: a raw set? run `fpar prepare` on it first)" if raw else ""
    raise DataError(f"{root}: not a GTEA61 processed root: it has no {wanted} folder{hint}")


def layouts_present(root: str | Path) -> list[str]:
    """Names of the layouts whose frames folder (`processed_frames2/`, `frames/`) `root` has."""
    return [layout.name for layout in LAYOUTS.values() if (Path(root) / layout.specs["rgb"].top).is_dir()]


@dataclass(frozen=True)
class Problem:
    """Something wrong in a dataset root, with the path it concerns."""

    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


# Ego-RNN keeps every instance with at least this many frames, whatever N (shorter clips repeat frames).
MIN_RGB_FRAMES = 5
RGB_SPANS = ("frames", "flows")  # what a two-stream clip spreads its N frames over (data.two_stream_rgb_over)


@dataclass(frozen=True)
class Sample:
    """One action instance and its files, each list indexed by position."""

    user: str
    label: str
    instance: str
    frames: tuple[Path, ...]
    flow_x: tuple[Path, ...] = ()
    flow_y: tuple[Path, ...] = ()
    mmaps: tuple[Path, ...] = ()  # the files, in number order
    mmaps_by_position: tuple[Path, ...] = ()  # one per number from the first; gaps filled (`fill_map_gaps`)

    @property
    def id(self) -> str:
        return f"{self.user}/{self.label}/{self.instance}"

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    @property
    def n_flows(self) -> int:
        return min(len(self.flow_x), len(self.flow_y))

    def frame(self, position: int) -> Path:
        return self.frames[position]

    def flow(self, axis: str, position: int) -> Path:
        """Flow `position` (from frame `position` to `position + 1`) along axis "x" or "y"."""
        if axis not in ("x", "y"):
            raise ValueError(f"flow axis must be 'x' or 'y', got {axis!r}")
        return (self.flow_x if axis == "x" else self.flow_y)[position]

    def rgb_span(self, over: str = "frames") -> int:
        """The count N frames are spread over: the frames, or the flows (Ego-RNN's two-stream rule)."""
        if over not in RGB_SPANS:
            raise ValueError(f"RGB frames are spread over one of {', '.join(RGB_SPANS)}, got {over!r}")
        return self.n_flows if over == "flows" else self.n_frames

    def files(self, modality: str) -> tuple[Path, ...]:
        """The files of `modality` ("rgb", "flow_x", "flow_y" or "mmaps"), in number order."""
        return {"rgb": self.frames, "flow_x": self.flow_x, "flow_y": self.flow_y, "mmaps": self.mmaps}[modality]

    @property
    def maps_by_position(self) -> tuple[Path, ...]:
        """One motion map per position, gaps filled (a Sample made by hand: its maps as given)."""
        return self.mmaps_by_position or self.mmaps

    def mmap(self, position: int) -> Path:
        """The motion map of frame `position`, by file number: a missing map's place is taken by the
        next map that exists (`fill_map_gaps`), and frames past the last map reuse the last one."""
        maps = self.maps_by_position
        if not maps:
            raise DataError(f"{self.id}: this sample has no motion maps")
        return maps[min(position, len(maps) - 1)]


@dataclass
class Discovery:
    """What `discover` found: the samples, the layout, and every problem met on the way."""

    root: Path
    layout: Layout
    samples: list[Sample]
    problems: list[Problem] = field(default_factory=list)

    @property
    def users(self) -> list[str]:
        return sorted({s.user for s in self.samples})

    def numbering_gaps(self, modalities: Sequence[str]) -> list[tuple[Path, str, str]]:
        """(instance folder, modality, first gap) wherever a sample's files of `modalities` skip or
        repeat a number (`Layout.numbering_gap`), in sample order."""
        gaps = []
        for sample in self.samples:
            for modality in modalities:
                gap = self.layout.numbering_gap(modality, sample.files(modality))
                if gap:
                    folder = self.layout.instance_dir(self.root, modality, sample.user, sample.label, sample.instance)
                    gaps.append((folder, modality, gap))
        return gaps


def instance_order(name: str) -> tuple[int, int, str]:
    """Sort key of a folder (instance) name: numeric names first in numeric order (GTEA instances
    are 1, 2, ... 10), then the others by name. Discovery and the prepare manifest both use it."""
    return (0, int(name), "") if name.isascii() and name.isdigit() else (1, 0, name)  # "²".isdigit() too


def _sorted_children(folder: Path) -> list[Path]:
    """Visible sub-folders in `instance_order`."""
    children = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(children, key=lambda p: instance_order(p.name))


def _files_by_position(folder: Path, spec: FileSpec) -> tuple[Path, ...]:
    numbered = [(spec.number_of(p.name), p) for p in folder.iterdir() if p.is_file()]
    return tuple(p for n, p in sorted((n, p) for n, p in numbered if n is not None))


def discover(root: str | Path, layout: str = "auto") -> Discovery:
    """Walk a dataset root and list its samples; problems are collected, not raised.

    An instance is keyed by (user, class, instance) across all modality folders, so an instance
    present in one modality but missing from another is found and reported.
    """
    root = Path(root)
    chosen = detect_layout(root, layout)
    tops = {spec.top for spec in chosen.specs.values()}
    keys: set[tuple[str, str, str]] = set()
    problems: list[Problem] = []
    for top in sorted(tops):
        if not (root / top).is_dir():
            problems.append(Problem(root / top, "missing folder"))
            continue
        for user_dir in _sorted_children(root / top):
            for class_dir in _sorted_children(user_dir):
                instances = _sorted_children(class_dir)
                if not instances:
                    problems.append(Problem(class_dir, "class folder has no instances"))
                keys.update((user_dir.name, class_dir.name, inst.name) for inst in instances)

    samples = []
    for user, label, instance in sorted(keys, key=_key_order):
        files: dict[str, tuple[Path, ...]] = {}
        for modality in chosen.modalities:
            folder = chosen.instance_dir(root, modality, user, label, instance)
            if not folder.is_dir():
                problems.append(Problem(folder, f"missing {modality} folder"))
                files[modality] = ()
                continue
            files[modality] = _files_by_position(folder, chosen.specs[modality])
            if not files[modality]:
                problems.append(Problem(folder, f"no {modality} files named like "
                                                f"{chosen.specs[modality].name(0)}"))
        if "flow_x" in files and len(files["flow_x"]) != len(files["flow_y"]):
            problems.append(Problem(chosen.instance_dir(root, "flow_x", user, label, instance),
                                    f"flow x/y count mismatch: {len(files['flow_x'])} x files, "
                                    f"{len(files['flow_y'])} y files"))
        maps = files.get("mmaps", ())
        samples.append(Sample(user, label, instance, frames=files["rgb"], flow_x=files.get("flow_x", ()),
                              flow_y=files.get("flow_y", ()), mmaps=maps,
                              mmaps_by_position=fill_map_gaps(maps, chosen.specs["mmaps"]) if maps else ()))
    return Discovery(root, chosen, samples, problems)


def fill_map_gaps(files: tuple[Path, ...], spec: FileSpec) -> tuple[Path, ...]:
    """Motion maps by position (number - spec.first), from position 0 to the last map's: a number
    with no file gets the next map that exists, as the course data's own readers do (its `mmaps/`
    folders have gaps; the MS followers of Ego-RNN look the next map up, or copy it into the gap).
    Indexing the sorted files by position would instead move every map after a gap to an earlier
    frame."""
    if not files:
        return ()
    by_number = {spec.number_of(path.name): path for path in files}
    filled, following = [], None
    for number in range(max(by_number), spec.first - 1, -1):  # backwards: the next existing map is known
        following = by_number.get(number, following)
        filled.append(following)
    return tuple(reversed(filled))


def _key_order(key: tuple[str, str, str]) -> tuple:
    user, label, instance = key
    return user, label, instance_order(instance)


ManifestRows = dict[tuple[str, str, str], dict[str, str]]


def read_manifest(root: str | Path) -> ManifestRows:
    """manifest.csv's rows by (user, class, instance); empty if the root has none.

    A file that is not UTF-8 CSV with `MANIFEST_COLUMNS` is a DataError naming it (and the line).
    """
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                        f"delete it and re-run fpar prepare") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    lines = text.splitlines()
    if not lines or lines[0] != ",".join(MANIFEST_COLUMNS):
        raise DataError(f"{path}:1: header must be {','.join(MANIFEST_COLUMNS)}")
    return manifest_rows(lines[1:], path, first_line=2)


def manifest_rows(lines: list[str], path: Path, first_line: int) -> ManifestRows:
    """Rows of `MANIFEST_COLUMNS` (CSV lines, no header) by key; later rows replace earlier ones.
    A line with another number of fields is a DataError naming `path` and the line."""
    rows: ManifestRows = {}
    try:
        for number, values in enumerate(csv.reader(lines), start=first_line):
            if len(values) != len(MANIFEST_COLUMNS):
                raise DataError(f"{path}:{number}: expected {len(MANIFEST_COLUMNS)} fields "
                                f"({','.join(MANIFEST_COLUMNS)}), found {len(values)}")
            row = dict(zip(MANIFEST_COLUMNS, values))
            rows[row["user"], row["class"], row["instance"]] = row
    except csv.Error as exc:
        raise DataError(f"{path}: not a CSV file ({exc})") from exc
    return rows


def unvouched(found: Discovery) -> list[Problem]:
    """Instances on disk that a prepared root's manifest does not list as ok: left by a labels row
    deleted since, or by an `fpar prepare` run that did not finish (its journal is still there).
    Roots without manifest.csv (e.g. Ego-RNN's) have nothing to vouch for them: no problems."""
    problems = []
    journal = found.root / MANIFEST_JOURNAL_NAME
    if journal.exists():
        problems.append(Problem(journal, "an `fpar prepare` run is under way or did not finish; re-run it"))
    manifest = read_manifest(found.root)
    if not manifest:
        return problems
    for sample in found.samples:
        if manifest.get((sample.user, sample.label, sample.instance), {}).get("status") != "ok":
            where = found.layout.sample_roots(found.root, sample.user, sample.label, sample.instance)[0]
            problems.append(Problem(where, f"not listed as ok in {MANIFEST_NAME} (its labels row was removed, "
                                           f"or a run was interrupted): re-run fpar prepare"))
    return problems


def unusable_reason(sample: Sample, keys: set[str] | frozenset[str], flow_stack: int,
                    rgb_over: str = "frames") -> str | None:
    """Why a dataset reading `keys` ("rgb", "mmaps", "flow") with L=`flow_stack` flows cannot use
    `sample` (None if it can). The one "too short" rule, as the reference's datasets apply it:

    * with "flow" (flow and two-stream datasets): at least L flows, and nothing else is counted,
      because Ego-RNN's flow and two-stream datasets count only the flow files;
    * "rgb" without flow: at least `MIN_RGB_FRAMES` frames, whatever N (N frames are then sampled
      with repeats, `sampling.frame_positions`);
    * "mmaps": motion maps at all (a frame past the last map reuses it).

    A two-stream clip spreads its frames over the frames or, with `rgb_over` "flows", over the
    flow count; either count must be at least 2 and its positions must exist among the frames
    (always so when flows = frames - 1, as `fpar prepare` and denseflow write them).

    The datasets drop such samples, `fpar data check` reports them.
    """
    if "flow" in keys:
        if sample.n_flows < flow_stack:
            return f"{sample.n_flows} flows, needs {flow_stack}"
    elif "rgb" in keys and sample.n_frames < MIN_RGB_FRAMES:
        return f"{sample.n_frames} frames, needs {MIN_RGB_FRAMES}"
    if "mmaps" in keys and not sample.mmaps:
        return "no motion maps"
    if "rgb" in keys and "flow" in keys:
        span = sample.rgb_span(rgb_over)
        if span < 2 or sample.n_frames < span:
            return f"{sample.n_frames} frames, {sample.n_flows} flows: too few to spread frames over the {rgb_over}"
    return None


def class_names(samples: list[Sample], exclude: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Sorted union of class names over all users, without the excluded ones.

    The reference numbers classes per user folder, which silently misaligns ids when a user lacks a
    class; a sorted union gives every user the same ids.
    """
    return sorted({s.label for s in samples} - set(exclude))


@dataclass(frozen=True)
class Split:
    """Train / validation / test samples of a leave-one-user-out split."""

    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    test_user: str
    selection: str  # "val": checkpoints chosen on `val`; "test": on the test user (reference protocol)


def check_test_user(samples: list[Sample], test_user: str) -> None:
    """DataError naming the users when `test_user` has no sample."""
    users = sorted({s.user for s in samples})
    if test_user not in users:
        raise DataError(f"test user {test_user!r} not found; users are {', '.join(users) or 'none'}")


def split_by_user(samples: list[Sample], test_user: str, val_fraction: float = 0.2,
                  selection: str = "val", seed: int = 0) -> Split:
    """Hold one user out for test; keep a stratified share of the others' instances for validation.

    With ``selection="test"`` the validation set *is* the test user, as in Ego-RNN; fpar's default
    keeps them apart so the reported test accuracy was not used to choose the checkpoint.
    """
    check_test_user(samples, test_user)
    if selection not in ("val", "test"):
        raise DataError(f"selection must be 'val' or 'test', got {selection!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    test = [s for s in samples if s.user == test_user]
    rest = [s for s in samples if s.user != test_user]
    if selection == "test":
        return Split(train=rest, val=test, test=test, test_user=test_user, selection=selection)
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[Sample]] = defaultdict(list)
    for s in rest:
        by_class[s.label].append(s)
    val_ids: set[str] = set()
    for label in sorted(by_class):
        group = by_class[label]
        n_val = int(round(val_fraction * len(group)))
        n_val = min(n_val, len(group) - 1)  # never take a class's last training instance
        for i in rng.permutation(len(group))[:n_val]:
            val_ids.add(group[i].id)
    train = [s for s in rest if s.id not in val_ids]
    val = [s for s in rest if s.id in val_ids]
    return Split(train=train, val=val, test=test, test_user=test_user, selection=selection)

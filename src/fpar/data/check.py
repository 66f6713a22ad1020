"""`fpar data check`: validate a dataset root and summarise it.

Every problem is a `layout.Problem` (path + what is wrong). Problems are collected, never raised,
so one run lists them all; the CLI decides whether they fail the run (`--strict`).

A root with no instance at all is not a problem but an error (DataError): there is nothing to
check, and a wrong `--layout` or an empty frames folder must not pass as "no problems".

Notes are about the settings, not the data, so they never count for `--strict`. Instances with
fewer than N frames (but at least 5: shorter ones are problems) are kept and sampled with repeats,
as Ego-RNN does, and a note counts them. An empty validation split (the stratified `val_fraction`
share rounds to 0 for every class, e.g. with 2 users x 2 instances per class) is a note, because
it depends on `val_fraction` and `selection` (with `selection=test`, the reference protocol, val
is the test user and never empty). An `--exclude` name that is no class of the root is a warning
line that is not a problem either.

By default every image is decoded, because a truncated JPEG only fails when it is read and a
training run should not find it at epoch 40. On real GTEA61 (~100k images) that takes minutes
on a laptop, hence the progress bar, several threads, and `read_images=False` (`--quick`)
to skip it.
"""

from __future__ import annotations

import os
import statistics
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import track
from rich.table import Table

from fpar.data.images import read_image
from fpar.data.layout import (
    MIN_RGB_FRAMES,
    Discovery,
    Problem,
    Sample,
    check_test_user,
    class_names,
    discover,
    layouts_present,
    split_by_user,
    unusable_reason,
    unvouched,
)
from fpar.errors import ConfigError, DataError, one_line
from fpar.options import usable_cores
from fpar.terminal import labelled


@dataclass
class CheckReport:
    """What `check_root` found: the discovery plus every problem, in path order."""

    discovery: Discovery
    problems: list[Problem]
    frames: int
    flow_stack: int
    images_read: bool
    outside: list[tuple[Path, Path]] = field(default_factory=list)  # (file, where its links lead) off the root
    map_gaps: list[tuple[Path, str]] = field(default_factory=list)  # (mmaps folder, its first gap)

    @property
    def clean(self) -> bool:
        return not self.problems


def _count_problems(found: Discovery, sample: Sample, flow_stack: int) -> list[Problem]:
    """Too few frames or flows for the datasets (`unusable_reason`) and counts that break the
    position alignment (flows != frames - 1, maps not n or n - 1); gaps in file numbers are
    `_gap_problems`', empty modalities `discover`'s."""
    def folder(modality: str) -> Path:
        return found.layout.instance_dir(found.root, modality, sample.user, sample.label, sample.instance)

    problems = []
    modalities = found.layout.modalities
    if sample.n_frames and unusable_reason(sample, {"rgb"}, flow_stack):
        problems.append(Problem(folder("rgb"), f"only {sample.n_frames} frames, fewer than {MIN_RGB_FRAMES} "
                                               f"(the RGB datasets drop this instance, as Ego-RNN does)"))
    if "flow_x" in modalities and sample.n_flows and unusable_reason(sample, {"flow"}, flow_stack):
        problems.append(Problem(folder("flow_x"), f"only {sample.n_flows} flows, fewer than L={flow_stack} "
                                                  f"(the flow and two-stream datasets drop this instance)"))
    n_maps, n = len(sample.maps_by_position), sample.n_frames  # gaps filled: `map_gaps`
    if "mmaps" in modalities and n_maps and n and n_maps not in (n - 1, n):
        problems.append(Problem(folder("mmaps"), f"{n_maps} motion maps for {n} frames (expected {n - 1} "
                                                 f"or {n}: map k belongs to frame k)"))
    x_y_agree = len(sample.flow_x) == len(sample.flow_y)  # else `discover` reported the mismatch
    if "flow_x" in modalities and x_y_agree and sample.n_flows and n and sample.n_flows != n - 1:
        problems.append(Problem(folder("flow_x"), f"{sample.n_flows} flows for {n} frames (expected {n - 1}: "
                                                  f"flow k goes from frame k to frame k+1)"))
    return problems


def _gap_problems(found: Discovery) -> list[Problem]:
    """Frames and flows that skip a number: positions after the gap would misalign. Motion maps are
    left to `map_gaps`, since the next map fills a gap."""
    numbered = [m for m in found.layout.modalities if m != "mmaps"]
    return [Problem(folder, f"{modality} files are not numbered consecutively ({gap}): positions after the "
                            f"gap would misalign") for folder, modality, gap in found.numbering_gaps(numbered)]


def map_gaps(found: Discovery) -> list[tuple[Path, str]]:
    """(motion-map folder, first gap) of each instance whose maps skip a number. Not a problem: the
    course data has such gaps, its readers let the next map stand in, and so does `Sample.mmap`."""
    if "mmaps" not in found.layout.modalities:
        return []
    return [(folder, gap) for folder, _, gap in found.numbering_gaps(["mmaps"])]


def _unreadable(paths: list[Path], progress: bool) -> list[Problem]:
    """Decode every image on a few threads; one problem per unreadable file."""
    def attempt(path: Path) -> Problem | None:
        try:
            read_image(path)
        except DataError as exc:
            return Problem(path, one_line(exc).removeprefix(f"{path}: "))
        return None

    with ThreadPoolExecutor(max_workers=min(8, usable_cores())) as pool:
        results = track(pool.map(attempt, paths), total=len(paths), description="reading images",
                        transient=True, disable=not progress)
        return [p for p in results if p is not None]


def _all_files(sample: Sample) -> list[Path]:
    return [*sample.frames, *sample.flow_x, *sample.flow_y, *sample.mmaps]


def outside_root(root: Path, files: list[Path]) -> list[tuple[Path, Path]]:
    """The files that symbolic links (of the file or of a folder on its way) take out of `root`,
    with where they lead. Not a problem: a root linked together from several disks is common; but a
    root from someone else could so read any image on this machine, so the check says so."""
    base = os.path.realpath(root)
    real = ((path, os.path.realpath(path)) for path in files)
    return [(path, Path(target)) for path, target in real if os.path.commonpath((base, target)) != base]


def check_root(root: str | Path, layout: str = "auto", frames: int = 7, flow_stack: int = 5,
               read_images: bool = True, progress: bool = False) -> CheckReport:
    """Validate a dataset root for clips of N=`frames` frames and L=`flow_stack` flows.

    Raises ConfigError when `frames` or `flow_stack` is below 1, and DataError when `root` is not
    a dataset root (missing, or no frames folder) or holds no instance in `layout`.
    """
    for name, value in (("frames", frames), ("flow_stack", flow_stack)):
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    found = discover(root, layout)
    if not found.samples:
        raise DataError(_nothing_found(found))
    problems = list(found.problems) + unvouched(found) + _gap_problems(found)
    for sample in found.samples:
        problems += _count_problems(found, sample, flow_stack)
    files = [p for s in found.samples for p in _all_files(s)]
    if read_images:
        problems += _unreadable(files, progress)
    problems.sort(key=lambda p: str(p.path))
    return CheckReport(found, problems, frames, flow_stack, read_images, outside_root(found.root, files),
                       map_gaps(found))


def _nothing_found(found: Discovery) -> str:
    """Why a root without instances is an error, with a hint when another layout's folders are there."""
    chosen = found.layout
    top = chosen.specs["rgb"].top
    where = (f"{top}/ has no user/class/instance folders" if (found.root / top).is_dir()
             else f"it has no {top}/ folder")
    others = [name for name in layouts_present(found.root) if name != chosen.name]
    hint = f"; this root looks like the {others[0]} layout (--layout {others[0]})" if others else ""
    return f"{found.root}: no instances found in the {chosen.name} layout ({where}){hint}"


def _spread(values: list[int]) -> str:
    """min/median/max, or '-' when there are none."""
    if not values:
        return "-"
    return f"{min(values)}/{statistics.median(values):g}/{max(values)}"


def _missing(samples: list[Sample], modalities: tuple[str, ...]) -> str:
    """Per modality, how many samples have no file of it."""
    counts = {m: sum(not s.files(m) for s in samples) for m in modalities}
    return ", ".join(f"{m} {n}" for m, n in counts.items() if n) or "-"


_COUNTS = (  # summary column, the modality it needs, what it counts in a sample
    ("frames", "rgb", lambda s: s.n_frames),
    ("flows", "flow_x", lambda s: s.n_flows),
    ("maps", "mmaps", lambda s: len(s.mmaps)),
)


def summary_table(report: CheckReport) -> Table:
    """One row per user and a total row: classes, instances, frames/flows/maps per instance."""
    found = report.discovery
    modalities = found.layout.modalities
    counts = {name: count for name, modality, count in _COUNTS if modality in modalities}
    table = Table(title=f"{found.root} ({found.layout.name} layout)",
                  caption=f"{', '.join(counts)} per instance: min/median/max; "
                          f"missing: instances without that modality")
    for name in ["user", "classes", "instances", *counts, "missing"]:
        table.add_column(name, justify="left" if name in ("user", "missing") else "right")
    groups = [(user, [s for s in found.samples if s.user == user]) for user in found.users]
    for i, (user, samples) in enumerate([*groups, ("all", found.samples)]):
        table.add_row(user, str(len(class_names(samples))), str(len(samples)),
                      *[_spread([count(s) for s in samples]) for count in counts.values()],
                      _missing(samples, modalities), end_section=i == len(groups) - 1)
    return table


def empty_val_users(samples: list[Sample], classes: list[str], test_users: list[str] | None = None,
                    val_fraction: float = 0.2, seed: int = 0) -> list[str]:
    """The held-out users (of `test_users`, default every user) whose split has an empty val."""
    listed = [s for s in samples if s.label in set(classes)]
    users = test_users or sorted({s.user for s in listed})
    return [user for user in users
            if not split_by_user(listed, user, val_fraction=val_fraction, seed=seed).val]


def empty_val_note(users: list[str], all_users: bool, val_fraction: float) -> str:
    """The note printed under the split table when val is empty."""
    which = "for every held-out user" if all_users else f"with {', '.join(users)} held out"
    return (f"val is empty {which}: selection=val has nothing to choose a checkpoint on; "
            f"raise val_fraction (now {val_fraction:g}) or use selection=test")


def split_table(samples: list[Sample], classes: list[str], test_users: list[str] | None = None,
                val_fraction: float = 0.2, seed: int = 0) -> Table:
    """Instances in train / val / test when each of `test_users` (default: every user) is held out.

    Only instances of `classes` count (excluded classes never reach a dataset); the split is
    `layout.split_by_user`'s, so these are the numbers a training run with the same settings uses
    before it drops short instances.
    """
    listed = [s for s in samples if s.label in set(classes)]
    users = sorted({s.user for s in listed})
    table = Table(title=f"leave-one-user-out splits (validation: {val_fraction:g} of the training users' "
                        f"instances, stratified by class)")
    for name in ("test user", "train", "val", "test", "classes not in train"):
        table.add_column(name, justify="right" if name in ("train", "val", "test") else "left")
    for user in test_users or users:
        split = split_by_user(listed, user, val_fraction=val_fraction, seed=seed)
        unseen = sorted({s.label for s in split.test} - {s.label for s in split.train})
        table.add_row(user, str(len(split.train)), str(len(split.val)), str(len(split.test)),
                      ", ".join(unseen) or "-")
    return table


def print_report(report: CheckReport, console: Console, exclude: list[str] | tuple[str, ...] = (),
                 test_users: list[str] | None = None, val_fraction: float = 0.2,
                 warn_unknown_exclude: bool = True) -> None:
    """The summary table, the class list (without `exclude`), the splits and their notes, then
    every problem. An unknown test user is a DataError raised before anything is printed; an
    `exclude` name that is no class of the root gets a warning line (with `warn_unknown_exclude`).
    """
    samples = report.discovery.samples
    for user in test_users or ():
        check_test_user(samples, user)
    console.print(summary_table(report))
    labels = {s.label for s in samples}
    classes = class_names(samples, exclude)
    excluded = sorted(labels - set(classes))
    console.print(f"classes ({len(classes)}): {', '.join(classes) or '-'}", highlight=False)
    if excluded:
        console.print(f"excluded: {', '.join(excluded)}", highlight=False)
    unknown = sorted(set(exclude) - labels)
    if unknown and warn_unknown_exclude:
        console.print(labelled("warning:", "yellow", f"excluded class(es) not in this root: {', '.join(unknown)}"),
                      soft_wrap=True)
    notes = 0
    if classes:
        console.print(split_table(samples, classes, test_users, val_fraction))
        empty = empty_val_users(samples, classes, test_users, val_fraction)
        if empty:
            notes += 1
            every = sorted({s.user for s in samples if s.label in set(classes)})
            note = empty_val_note(empty, all_users=not test_users and empty == every, val_fraction=val_fraction)
            console.print(labelled("note:", "cyan", note), soft_wrap=True)
    repeating = [s for s in samples if MIN_RGB_FRAMES <= s.n_frames < report.frames and s.label in set(classes)]
    if repeating:
        notes += 1
        console.print(labelled("note:", "cyan", f"{len(repeating)} instance(s) have fewer than N={report.frames} frames "
                      f"(e.g. {repeating[0].id}: {repeating[0].n_frames}): their clips repeat frames, as in Ego-RNN"),
                      soft_wrap=True)
    if report.map_gaps:
        notes += 1
        folder, gap = report.map_gaps[0]
        console.print(labelled("note:", "cyan", f"{len(report.map_gaps)} instance(s) have gaps in their motion maps "
                               f"(e.g. {folder}: {gap}); the next map stands in for a missing one, as the course "
                               f"data's readers do"), soft_wrap=True)
    if report.outside:
        notes += 1
        path, target = report.outside[0]
        console.print(labelled("note:", "cyan", f"{len(report.outside)} file(s) lie outside the root through "
                               f"symbolic links (e.g. {path} -> {target}); they are read as part of this data set"),
                      soft_wrap=True)
    if not report.images_read:
        console.print("images not decoded (--quick)")
    if report.clean:
        noted = f"; {notes} note(s) above" if notes else ""
        console.print(labelled("no problems", "green", f"(N={report.frames}, L={report.flow_stack}{noted})"))
        return
    for problem in report.problems:
        console.print(labelled("warning:", "yellow", problem), soft_wrap=True)
    console.print(labelled(f"{len(report.problems)} problem(s)", "yellow", f"(N={report.frames}, L={report.flow_stack})"))

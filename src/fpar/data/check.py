"""`fpar data check`: validate a dataset root and summarise it.

Every problem is a `layout.Problem` (path + what is wrong). Problems are collected, never raised,
so one run lists them all; the CLI decides whether they fail the run (`--strict`).

By default every image is decoded, because a truncated JPEG only fails when it is read and a
training run should not find it at epoch 40. On real GTEA61 (~100k images) that takes minutes
on a laptop, hence the progress bar, several threads, and `read_images=False` (`--quick`)
to skip it.
"""

from __future__ import annotations

import os
import statistics
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import track
from rich.table import Table

from fpar.data.datasets import read_image
from fpar.data.layout import Discovery, Problem, Sample, class_names, discover
from fpar.errors import DataError


@dataclass
class CheckReport:
    """What `check_root` found: the discovery plus every problem, in path order."""

    discovery: Discovery
    problems: list[Problem]
    frames: int
    flow_stack: int
    images_read: bool

    @property
    def clean(self) -> bool:
        return not self.problems


def _count_problems(found: Discovery, sample: Sample, frames: int, flow_stack: int) -> list[Problem]:
    """Too few frames, flows or maps for what training reads (empty modalities `discover` reports)."""
    def folder(modality: str) -> Path:
        return found.layout.instance_dir(found.root, modality, sample.user, sample.label, sample.instance)

    problems = []
    modalities = found.layout.modalities
    if 0 < sample.n_frames < max(frames, 2):
        problems.append(Problem(folder("rgb"), f"only {sample.n_frames} frames, fewer than N={frames} "
                                               f"(training drops this instance)"))
    if "flow_x" in modalities and 0 < sample.n_flows < flow_stack:
        problems.append(Problem(folder("flow_x"), f"only {sample.n_flows} flows, fewer than L={flow_stack} "
                                                  f"(training drops this instance)"))
    n_maps, n = len(sample.mmaps), sample.n_frames
    if "mmaps" in modalities and n_maps and n and n_maps not in (n - 1, n):
        problems.append(Problem(folder("mmaps"), f"{n_maps} motion maps for {n} frames (expected {n - 1} "
                                                 f"or {n}: map k belongs to frame k)"))
    return problems


def _unreadable(paths: list[Path], progress: bool) -> list[Problem]:
    """Decode every image on a few threads; one problem per unreadable file."""
    def attempt(path: Path) -> Problem | None:
        try:
            read_image(path)
        except DataError as exc:
            return Problem(path, str(exc).removeprefix(f"{path}: "))
        return None

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = track(pool.map(attempt, paths), total=len(paths), description="reading images",
                        transient=True, disable=not progress)
        return [p for p in results if p is not None]


def _all_files(sample: Sample) -> list[Path]:
    return [*sample.frames, *sample.flow_x, *sample.flow_y, *sample.mmaps]


def check_root(root: str | Path, layout: str = "auto", frames: int = 7, flow_stack: int = 5,
               read_images: bool = True, progress: bool = False) -> CheckReport:
    """Validate a dataset root for clips of N=`frames` frames and L=`flow_stack` flows.

    Raises DataError only when `root` is not a dataset root at all (missing, or no frames folder).
    """
    found = discover(root, layout)
    problems = list(found.problems)
    for sample in found.samples:
        problems += _count_problems(found, sample, frames, flow_stack)
    if read_images:
        problems += _unreadable([p for s in found.samples for p in _all_files(s)], progress)
    problems.sort(key=lambda p: str(p.path))
    return CheckReport(found, problems, frames, flow_stack, read_images)


def _spread(values: list[int]) -> str:
    """min/median/max, or '-' when there are none."""
    if not values:
        return "-"
    return f"{min(values)}/{statistics.median(values):g}/{max(values)}"


def _missing(samples: list[Sample], modalities: tuple[str, ...]) -> str:
    """Per modality, how many samples have no file of it."""
    counts = {m: sum(not getattr(s, "frames" if m == "rgb" else m) for s in samples) for m in modalities}
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


def print_report(report: CheckReport, console: Console) -> None:
    """The summary table, the class list, then every problem as a warning line."""
    console.print(summary_table(report))
    classes = class_names(report.discovery.samples)
    console.print(f"classes ({len(classes)}): {', '.join(classes) or '-'}", highlight=False)
    if not report.images_read:
        console.print("images not decoded (--quick)")
    if report.clean:
        console.print(f"[green]no problems[/] (N={report.frames}, L={report.flow_stack})")
        return
    for problem in report.problems:
        console.print(f"[yellow]warning:[/] {problem}", highlight=False, soft_wrap=True)
    console.print(f"[yellow]{len(report.problems)} problem(s)[/] (N={report.frames}, L={report.flow_stack})")

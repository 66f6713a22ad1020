"""Benchmark of prepare's bookkeeping (not collected by pytest; docs/prepare.md quotes its output).

    PYTHONPATH=src python tests/prepare/bench_bookkeeping.py

One manifest update at 10 and 10,000 rows, 10,000 updates one by one, and reading 4,000 GTEA
annotation files whose videos are named without suffix.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from fpar.data.layout import MANIFEST_COLUMNS
from fpar.io.labels import read_labels
from fpar.prepare.manifest import ManifestStore


def _row(i: int) -> dict[str, str]:
    row = dict.fromkeys(MANIFEST_COLUMNS, "")
    row.update(user=f"S{i % 4}", instance=str(i), status="ok", video=f"v{i}.mp4", frames="8", flows="7",
               **{"class": "take_cup"})
    return row


def main() -> None:
    with tempfile.TemporaryDirectory() as temp:
        for rows in (10, 10_000):
            store = ManifestStore(Path(temp) / str(rows))
            store.root.mkdir()
            store.record([_row(i) for i in range(rows)])
            store.fold()
            start = time.perf_counter()
            for i in range(200):
                store.record([_row(i)])
            update = (time.perf_counter() - start) / 200
            start = time.perf_counter()
            store.fold()
            print(f"{rows} rows: one update {update * 1e3:.3f} ms, fold {(time.perf_counter() - start) * 1e3:.1f} ms")
        store = ManifestStore(Path(temp) / "one_by_one")
        store.root.mkdir()
        start = time.perf_counter()
        for i in range(10_000):
            store.record([_row(i)])
        store.fold()
        print(f"10,000 updates one by one + fold: {time.perf_counter() - start:.2f} s")
        videos = Path(temp) / "gtea"
        videos.mkdir()
        for i in range(4000):
            (videos / f"S1_{i:04d}.mp4").write_bytes(b"")
            (videos / f"S1_{i:04d}.txt").write_text("<take><cup> (1-5)\n<put><cup> (6-9)\n")
        start = time.perf_counter()
        segments = read_labels(videos)
        print(f"4,000 GTEA annotation files ({len(segments)} segments): {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()

"""Where a run works and who does the work: its own work folder, and a pool of worker processes
that die with it.

* Work folder: ``ROOT/.tmp/<shard>.<pid>/`` (`RUN_ID`), so two runs never share one. Every process
  of the run holds a shared lock on its `WORKERS_LOCK_NAME`; the kernel drops it when the process
  dies. A new run removes the folders of dead runs: those of its own shard (whose run lock it now
  holds) and of shards whose run lock is free, after waiting until no process holds their workers
  lock, so no straggler of a killed run can still write while the new one starts.
* Workers: one video per task, one OpenCV thread each; on Linux the kernel kills a worker when its
  parent dies (``prctl(PR_SET_PDEATHSIG)``), elsewhere a watchdog thread exits when the parent is gone.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import cv2

from fpar.data.layout import PREPARE_TEMP_NAME, RUN_ID, RUN_LOCK_NAME, WORKERS_LOCK_NAME
from fpar.errors import DataError
from fpar.prepare.locks import acquire, release, wait_for
from fpar.prepare.manifest import ManifestStore, SampleResult
from fpar.prepare.settings import PrepareSettings
from fpar.prepare.video_run import VideoJob, reason, run_video

STRAGGLER_TIMEOUT = 30.0  # s to wait for the workers of a killed run to be gone
_PR_SET_PDEATHSIG = 1
_held: list[int] = []  # a worker's workers-lock descriptor, kept open for the process's life


class RunSpace:
    """This run's work folder (see the module doc); entering it first removes dead runs' folders."""

    def __init__(self, root: Path, shard: str) -> None:
        self.root, self.shard = Path(root), shard
        self.temp = self.root / PREPARE_TEMP_NAME
        self.folder = self.temp / RUN_ID.format(shard=shard, pid=os.getpid())
        self.workers_lock = self.folder / WORKERS_LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> RunSpace:
        remove_dead_runs(self.root, self.shard)
        try:
            self.folder.mkdir(parents=True)
        except OSError as exc:
            raise DataError(f"{self.folder}: cannot create the work folder ({exc.strerror or exc})") from exc
        self._fd = acquire(self.workers_lock, shared=True)
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        if self._fd is not None:
            os.close(self._fd)
        try:
            self.temp.rmdir()  # unless another shard's run is working
        except OSError:
            pass


def remove_dead_runs(root: Path, own_shard: str) -> None:
    """Remove the work folders of runs that are gone, and their temporary files (module doc)."""
    temp = Path(root) / PREPARE_TEMP_NAME
    for folder in sorted(temp.iterdir()) if temp.is_dir() else []:
        if not folder.is_dir():
            folder.unlink(missing_ok=True)
            continue
        shard = folder.name.rpartition(".")[0]
        run_lock, held = Path(root) / RUN_LOCK_NAME.format(shard=shard), None
        if shard != own_shard and re.fullmatch(r"\d+of\d+", shard):
            held = acquire(run_lock, blocking=False)
            if held is None:
                continue  # that shard's run is alive
        fd = wait_for(folder / WORKERS_LOCK_NAME, STRAGGLER_TIMEOUT)
        shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)
        if held is not None:
            release(held, run_lock, remove=True)
    ManifestStore(root).remove_temp_files()


def run_jobs(root: Path, space: RunSpace, settings: PrepareSettings, jobs: list[VideoJob],
             workers: int) -> Iterator[tuple[VideoJob, list[SampleResult]]]:
    """(job, results) as jobs finish: in this process for one worker, else in a process pool."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield job, run_video(root, space.folder, settings, job)
        return
    pool = ProcessPoolExecutor(min(workers, len(jobs)), mp_context=get_context("spawn"), initializer=_init_worker,
                               initargs=(os.getpid(), space.workers_lock))
    with pool:
        with _one_blas_thread():  # the workers start during the submits, with this environment
            futures = {pool.submit(run_video, root, space.folder, settings, job): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                yield job, future.result()
            except Exception as exc:  # noqa: BLE001 - a worker that died takes only its video down
                results = [SampleResult(s, 0, 0, f"worker failed: {reason(exc)}") for s in job.segments]
                ManifestStore(root).record([r.row() for r in results])
                yield job, results


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Workers started inside see OPENBLAS_NUM_THREADS=1 (unless the user set it): numpy's OpenBLAS
    otherwise starts a thread per core in each worker, which spun for about 3% of a short run's
    CPU (`perf`: blas_thread_server) though prepare makes no BLAS call worth a thread. It must be
    in the environment before numpy loads, which in a spawned worker is before any initializer."""
    added = "OPENBLAS_NUM_THREADS" not in os.environ
    if added:
        os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        if added:
            os.environ.pop("OPENBLAS_NUM_THREADS", None)


def _init_worker(parent: int, workers_lock: Path) -> None:
    """Die with the parent; hold the run's workers lock; one OpenCV thread (parallelism is across
    videos, OpenCV's own threads would oversubscribe)."""
    die_with_parent(parent)
    fd = acquire(workers_lock, shared=True)
    if fd is not None:
        _held.append(fd)
    cv2.setNumThreads(1)


def die_with_parent(parent: int) -> None:
    """End this process when `parent` ends (at once if it already has)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    else:
        threading.Thread(target=_watch, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)

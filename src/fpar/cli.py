"""The `fpar` command line: every verb is a thin call into the library.

Errors a user can cause are `FparError`s: printed in one line, exit code 1, no traceback
(add `--debug` before the verb to see it).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from fpar.config import MODEL_MAXIMA, DataConfig
from fpar.data.synthetic.presets import DEFAULT_CLASSES, OBJECTS, TINY_CLASSES, VERBS, SynthConfig
from fpar.errors import FparError, one_line
from fpar.explain.limits import MAX_FRAMES, MAX_MEGABYTES
from fpar.options import (
    DEFAULT_BOUND,
    DEFAULT_FLOW,
    DEFAULT_FRAME_SIZE,
    FLOW_METHODS,
    format_size,
    parse_list,
    parse_size,
)
from fpar.terminal import labelled, make_console

console = make_console()
app = typer.Typer(
    name="fpar",
    help="First-person action recognition: make data, train, evaluate and explain video models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring paragraphs reflow to the terminal's width
)
data_app = typer.Typer(help="Inspect and validate dataset roots.", no_args_is_help=True)

_state = {"debug": False}

# Help texts show the library's defaults, read from the presets (light modules: no torch, av or cv2).
_SYNTH, _TINY = SynthConfig(), SynthConfig.tiny()
_DATA = DataConfig()


def _preset(default: object, tiny: object) -> str:
    return f"{default}; --tiny: {tiny}"


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    """fpar: first-person action recognition on GTEA61-style data.

    Typical flow: `fpar synth` (or raw videos) -> `fpar prepare` -> `fpar data check` -> train.
    """
    _state["debug"] = debug


# ---- verbs -------------------------------------------------------------------------------------
# Each verb parses options, calls one library function, and prints a short result.

@app.command("demo", rich_help_panel="Start here")
def demo_verb(
    out: Annotated[Path, typer.Option(help="Folder the demo writes into.")] = Path("runs/demo"),
    tiny: Annotated[bool, typer.Option("--tiny", help="Smallest sizes, one epoch a stage (a minute or two; what "
                                                      "the tests run). Its accuracies mean nothing.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic data and of the (first) training run.")] = 0,
    seeds: Annotated[int, typer.Option(help="Train every model with this many training seeds (SEED, SEED+1, ...) "
                                            "on the same data; the table shows mean ± std.")] = 1,
    configs: Annotated[Optional[Path], typer.Option(help="Folder of the demo recipes (default: the repository's "
                                                         "configs/demo).")] = None,
    threads: Annotated[int, typer.Option(help="torch threads; 0: all cores. 1 is far faster on a CPU shared with "
                                              "other work (measured: 10x per training step at load 7).")] = 1,
) -> None:
    """Run the report's whole story on built-in synthetic data, end to end.

    synth -> prepare (+ quality vs ground truth) -> data check -> warm-up of the backbone on single
    frames of 24 other synthetic users (the stand-in for ImageNet weights) -> train rgb, flow, rgb_ms,
    rgb_ms_feedback, two_stream (configs/demo, stages shared as in the report) -> evaluation on the
    held-out user, the comparison table and training curves -> a small alpha search -> class
    activation maps (a CAM video, rgb_ms vs rgb_ms_feedback before/after). One line per step with its
    time, then the table and where every file is. Re-running resumes.

    Example: fpar demo --out runs/demo      (three training seeds: fpar demo --out runs/demo-seeds --seeds 3)
    """
    from fpar.demo import CONFIGS, run_demo

    run_demo(out, tiny=tiny, seed=seed, seeds=seeds, configs=configs or CONFIGS, threads=threads, console=console)


@app.command("reproduce", rich_help_panel="Start here")
def reproduce_verb(
    overrides: Annotated[Optional[list[str]], typer.Argument(
        help="section.key=value overrides for every recipe, e.g. train.device=cuda data.workers=8 "
             "data.test_user=S3.", show_default=False)] = None,
    out: Annotated[Path, typer.Option(help="Folder to write into: `prepared/`, `train/<model>/`, `report/`, `cam/`.")]
    = Path("runs/gtea61"),
    videos: Annotated[Optional[Path], typer.Option(
        "--videos", help="Raw videos to prepare first, as `fpar prepare --videos`: a labels.csv, or a folder of "
                         "videos (see --labels).", show_default=False)] = None,
    labels: Annotated[Optional[Path], typer.Option(
        "--labels", help="Labels of a --videos folder, as `fpar prepare --labels` (labels.csv or GTEA annotations).",
        show_default="FOLDER/labels.csv, else FOLDER's *.txt")] = None,
    root: Annotated[Optional[Path], typer.Option(
        "--root", help="A dataset root already in the processed layout (e.g. GTEA61 as published), instead of "
                       "--videos.", show_default=False)] = None,
    configs: Annotated[Optional[Path], typer.Option(
        help="Folder of the five recipes, naming their paths as configs/gtea61 does.",
        show_default="the repository's configs/gtea61")] = None,
    weights: Annotated[Optional[str], typer.Option(
        help="Backbone weights where a recipe says imagenet: imagenet (torchvision's, downloaded once), a local "
             "ResNet-34 state dict, or none.", show_default="imagenet")] = None,
    epochs: Annotated[Optional[int], typer.Option(
        help="At most this many epochs a stage: a smoke run of the whole pipeline before the real one.",
        show_default="the recipes'")] = None,
    seed: Annotated[int, typer.Option(help="Training seed (of the first run, with --seeds).")] = 0,
    seeds: Annotated[int, typer.Option(help="Train every model with this many seeds (SEED, SEED+1, ...); the "
                                            "table shows mean ± std.")] = 1,
    size: Annotated[Optional[str], typer.Option(help="With --videos: frame size WIDTHxHEIGHT, or native.",
                                                show_default=format_size(DEFAULT_FRAME_SIZE))] = None,
    flow: Annotated[Optional[str], typer.Option(help="With --videos: dense flow, dis (fast), tvl1 or farneback.",
                                                show_default=DEFAULT_FLOW)] = None,
    workers: Annotated[Optional[int], typer.Option(help="With --videos: videos prepared at once.",
                                                   show_default="the cores this process may use", min=1)] = None,
) -> None:
    """The report's comparison table, training curves and CAM figures from your own data, in one command.

    [prepare raw videos] -> data check -> train rgb, flow, rgb_ms, rgb_ms_feedback, two_stream
    (configs/gtea61: the reference recipes, stages shared as in the report) -> evaluation on the held-out
    user, the comparison table and training curves -> a CAM video and the before/after figure (rgb_ms vs
    rgb_ms_feedback) on a test-user clip. One line per step with its time, then the table and where every
    file is. Re-running resumes. The alpha search is a job of its own: fpar search-alpha.

    Examples:

      fpar reproduce --videos gtea/videos --labels gtea/labels --out runs/gtea61 train.device=cuda

      fpar reproduce --root data/gtea61 --out runs/gtea61 --weights resnet34.pth

      fpar reproduce --root data/gtea61 --out runs/smoke --epochs 1 data.image_size=112   (a smoke run)

      fpar reproduce --root data/gtea61 --out runs/gtea61-seeds --seeds 3   (mean ± std over 3 seeds)
    """
    from fpar.prepare import PrepareSettings
    from fpar.reproduce import CONFIGS, run_reproduce

    settings = None  # as fpar prepare's defaults, unless given (and then refused with --root)
    if size is not None or flow is not None:
        settings = PrepareSettings(size=parse_size(size or format_size(DEFAULT_FRAME_SIZE), allow_native=True),
                                   flow=flow or DEFAULT_FLOW)
    run_reproduce(out, videos=videos, labels=labels, root=root, configs=configs or CONFIGS, weights=weights,
                  overrides=overrides, epochs=epochs, seed=seed, seeds=seeds, settings=settings, workers=workers,
                  console=console)


@app.command("synth", rich_help_panel="Data")
def synth_verb(
    out: Annotated[Path, typer.Option("--out", help="Folder to write videos/, gt/ and labels.csv into.")],
    users: Annotated[Optional[str], typer.Option(help="Comma-separated user names.",
                                                 show_default=",".join(_SYNTH.users))] = None,
    classes: Annotated[Optional[str], typer.Option(
        help=f"Comma-separated verb_object classes; verbs {', '.join(VERBS)}; objects {', '.join(OBJECTS)}.",
        show_default=_preset(",".join(DEFAULT_CLASSES), ",".join(TINY_CLASSES)))] = None,
    clips_per_class: Annotated[Optional[int], typer.Option("--clips-per-class", help="Clips of each class per user.",
                                                           show_default=_preset(_SYNTH.clips_per_class,
                                                                                _TINY.clips_per_class))] = None,
    size: Annotated[Optional[str], typer.Option(help="Frame size WIDTHxHEIGHT (even sides).",
                                                show_default=_preset(f"{_SYNTH.width}x{_SYNTH.height}",
                                                                     f"{_TINY.width}x{_TINY.height}"))] = None,
    frames: Annotated[Optional[int], typer.Option(help="Frames per video.",
                                                  show_default=_preset(_SYNTH.frames, _TINY.frames))] = None,
    seed: Annotated[int, typer.Option(help="Everything is a function of the seed.")] = 0,
    tiny: Annotated[bool, typer.Option("--tiny", help="The smallest useful set (tests, demo); options given "
                                                      "explicitly still apply.")] = False,
    workers: Annotated[Optional[int], typer.Option(help="Processes that render clips.",
                                                   show_default="the usable cores; 1 under 64 clips", min=1)] = None,
) -> None:
    """Write a synthetic egocentric data set: H.264 videos, labels.csv and ground truth.

    A hand takes, puts, shakes, stirs or pours a cup, box or bottle on each user's own table top,
    filmed by a moving head camera.
    `gt/<video>.npz` holds what really moves (moving, T x H x W) and the camera (T x 3 x 3
    homographies from frame 0); training never reads it.
    take_X and put_X differ only in time order; classes of one verb differ only in the object.

    Example: fpar synth --out runs/synth --clips-per-class 5 --seed 0
    """
    from rich.table import Table

    from fpar.data.synthetic import config_from_options, synthesize

    cfg = config_from_options(tiny=tiny, users=users, classes=classes, clips_per_class=clips_per_class,
                              size=size, frames=frames, seed=seed)
    summary = synthesize(out, cfg, progress=True, workers=workers)
    table = Table("videos", "users", "classes", "frames", "size", "seconds", title=f"wrote {summary.labels}")
    table.add_row(str(summary.videos), ",".join(summary.users), str(len(summary.classes)), str(summary.frames),
                  f"{summary.width}x{summary.height}", f"{summary.seconds:.1f}")
    console.print(table)


@app.command("prepare", rich_help_panel="Data")
def prepare_verb(
    videos: Annotated[Path, typer.Option("--videos", help="labels.csv (video,user,label[,start,end]; video paths "
                                                          "relative to it), or a folder of videos (see --labels).")],
    out: Annotated[Path, typer.Option("--out", help="Dataset root to write (GTEA61 course layout + manifest.csv).")],
    labels: Annotated[Optional[Path], typer.Option(
        "--labels", help="Labels of a --videos folder: a labels.csv, or raw GTEA annotations (a folder of "
                         "`<video stem>.txt` files with lines `<verb><object> (start-end)`, or one such file).",
        show_default="FOLDER/labels.csv, else FOLDER's *.txt")] = None,
    size: Annotated[str, typer.Option(help="Frame size WIDTHxHEIGHT (frames are stretched to it), or native.")]
    = format_size(DEFAULT_FRAME_SIZE),
    flow: Annotated[str, typer.Option(help="Dense flow: dis (fast), tvl1 (what denseflow computes), farneback.")]
    = DEFAULT_FLOW,
    bound: Annotated[float, typer.Option(help="Flow images clip to [-bound, bound] px/frame, mapped to 0..255.")]
    = DEFAULT_BOUND,
    warp: Annotated[bool, typer.Option("--warp/--plain", help="Remove the camera's motion (homography) "
                                                              "before dense flow, or not.")] = True,
    hand_masks: Annotated[Optional[Path], typer.Option(
        "--hand-masks", help="Folder of masks kept out of the camera estimate: `<video stem>/<frame>.png`, "
                             "white = exclude.")] = None,
    workers: Annotated[Optional[int], typer.Option(
        help="Videos prepared (and, with --evaluate, samples scored) at once.",
        show_default="the cores this process may use", min=1)] = None,
    shard: Annotated[str, typer.Option(help="K/N: take every N-th video from the K-th (cluster job arrays).")]
    = "1/1",
    evaluate: Annotated[bool, typer.Option("--evaluate", help="Then score the root against the synthetic ground "
                                                              "truth in gt/ beside the labels file; scores also "
                                                              "go to OUT/quality.json.")] = False,
) -> None:
    """Turn raw videos into RGB frames, warp optical flow and motion maps, in parallel and resumably.

    A killed run resumes where it stopped: complete samples are skipped, half-written ones redone.

    Failed videos are listed with their reason in the summary and in manifest.csv; exit code 1 if any failed.

    --evaluate: background flow residual of plain vs warp flow, motion-map IoU against gt/ (`fpar synth` data),
    printed and written to OUT/quality.json.

    Examples:

      fpar prepare --videos runs/synth/labels.csv --out runs/prepared --evaluate

      fpar prepare --videos gtea/videos --labels gtea/labels --out data/gtea61 --shard 1/4
    """
    from fpar.io.labels import resolve_inputs
    from fpar.prepare import PrepareSettings, parse_shard, prepare

    labels_file, videos_dir = resolve_inputs(videos, labels)
    settings = PrepareSettings(size=parse_size(size, allow_native=True), flow=flow, bound=bound, warp=warp, hand_masks=hand_masks)
    report = prepare(labels_file, out, settings, videos=videos_dir, workers=workers, shard=parse_shard(shard))
    for line in report.summary():
        console.print(line, highlight=False, soft_wrap=True)  # one line per failure, however long
    if evaluate:
        from fpar.prepare.quality import evaluate as evaluate_root

        quality = evaluate_root(labels_file, out, videos_dir, progress=True, workers=workers)
        for line in quality.lines():
            console.print(line, highlight=False)
        console.print(f"scores written to {quality.save(out)}", highlight=False, soft_wrap=True)
    if report.failed:
        raise SystemExit(1)


@app.command("prepare-bench", rich_help_panel="Data")
def prepare_bench_verb(
    size: Annotated[str, typer.Option(help="Frame size WIDTHxHEIGHT.")] = format_size(DEFAULT_FRAME_SIZE),
    pairs: Annotated[int, typer.Option(help="Frame pairs timed per method.")] = 10,
    flow: Annotated[str, typer.Option(help="Comma-separated methods.")] = ",".join(FLOW_METHODS),
    video: Annotated[Optional[Path], typer.Option(help="Time on this video's first frames instead of a "
                                                       "synthetic clip.")] = None,
    threads: Annotated[int, typer.Option(help="OpenCV threads (prepare's workers use 1 each).")] = 1,
) -> None:
    """Frames per second of each flow method and of the camera (homography) step.

    Example: fpar prepare-bench --size 320x240 --pairs 10 --flow dis,tvl1
    """
    from rich.table import Table

    from fpar.prepare.benchmark import benchmark

    result = benchmark(parse_size(size), pairs, tuple(parse_list(flow)), video, threads, progress=True)
    table = Table("method", "dense flow fps", "warp flow fps (with homography)",
                  title=f"{size}, {pairs} pairs, {threads} OpenCV thread(s); "
                        f"homography + warp alone {result.homography_fps:.1f} fps")
    for speed in result.speeds:
        table.add_row(speed.method, f"{speed.flow_fps:.1f}", f"{speed.warp_flow_fps:.1f}")
    console.print(table)


app.add_typer(data_app, name="data", rich_help_panel="Data")


@data_app.command("cache")
def data_cache(
    folder: Annotated[Optional[Path], typer.Option(
        help="The cache folder (a recipe's data.frame_cache).",
        show_default="$FPAR_CACHE_DIR/frames, else ~/.cache/fpar/frames")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Delete the cached images (only files the cache "
                                                        "wrote; nothing else in the folder).")] = False,
) -> None:
    """Show where decoded frames are cached between epochs and how much they take, or clear them.

    Training and evaluation keep each image's decoded, resized pixels there after its first read
    (data.frame_cache: auto, off, or a folder), so later epochs skip PNG decoding; entries of a
    changed image are not reused. Clearing is always safe: the next epoch decodes again.

    Example: fpar data cache --clear
    """
    from fpar.data.frame_cache import FrameCache, default_folder

    cache = FrameCache(folder or default_folder())
    files, size = cache.clear() if clear else cache.size()
    verb = "removed" if clear else "holds"
    console.print(f"frame cache {cache.folder}: {verb} {files} file(s), {size / 2**20:.1f} MiB", highlight=False)


@data_app.command("check")
def data_check(
    root: Annotated[Path, typer.Argument(help="Dataset root: the folder holding processed_frames2/ (course "
                                              "layout) or frames/ (Ego-RNN layout).")],
    layout: Annotated[str, typer.Option(help="Layout of ROOT: auto, course or egornn.")] = "auto",
    frames: Annotated[int, typer.Option("--frames", help="N, RGB frames per clip: instances with fewer "
                                                         "repeat frames (a note).")] = _DATA.frames,
    flow_stack: Annotated[int, typer.Option("--flow-stack", help="L, flows per stack: instances with fewer "
                                                                 "are reported.")] = _DATA.flow_stack,
    quick: Annotated[bool, typer.Option("--quick", help="Skip decoding every image (much faster on "
                                                        "real data; unreadable files go unnoticed).")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit with code 1 if there is any problem.")] = False,
    test_user: Annotated[Optional[str], typer.Option(
        "--test-user", help="Show the train/val/test split with this user held out.",
        show_default="every user, one row each")] = None,
    exclude: Annotated[Optional[str], typer.Option(
        help="Comma-separated classes left out of the class list and the splits ('' for none); "
             "a name that is no class of ROOT gets a warning.",
        show_default=",".join(_DATA.exclude_classes))] = None,
) -> None:
    """Validate a dataset root and summarise it (users, classes, frames/flows/maps per instance),
    and list the leave-one-user-out splits (instances in train / val / test per held-out user).

    Problems, each printed as a warning with its path:
    missing folder, empty instance, fewer than 5 frames or fewer flows than L,
    unreadable image, flow x/y count mismatch, flows or maps not matching the frames,
    gaps in file numbers.
    The exit code is 0 unless --strict; --quick skips decoding the images.
    A root with no instance (an empty frames folder, or the wrong --layout) is an error (exit 1).
    Notes (instances with fewer than N frames, kept with repeated frames as in Ego-RNN; an empty
    val split: raise val_fraction or train with selection=test) are about the settings, not the
    data, and do not count for --strict.

    Example: fpar data check data/gtea61 --frames 25 --flow-stack 5 --test-user S2 --strict
    """
    from fpar.data.check import check_root, print_report

    report = check_root(root, layout=layout, frames=frames, flow_stack=flow_stack, read_images=not quick,
                        progress=True)
    print_report(report, console, exclude=_DATA.exclude_classes if exclude is None else parse_list(exclude),
                 test_users=[test_user] if test_user else None, val_fraction=_DATA.val_fraction,
                 warn_unknown_exclude=exclude is not None)
    if strict and not report.clean:
        raise typer.Exit(1)


@app.command("models", rich_help_panel="Models")
def models_verb(
    num_classes: Annotated[int, typer.Option("--num-classes", help="Classes of the classifier (at least 1).")] = 61,
    image_size: Annotated[int, typer.Option("--image-size", help="Input side (sizes the MS head): 224 is the "
                                                                 "reference, 112 the demo; at least 32.")] = 224,
) -> None:
    """List the registered models with their parameter counts and the batch keys they read.

    Input sizes: 224 is the reference's (layer4 7x7) and 112 the demo's (4x4). Any side of at
    least 32 runs (layer4 is 32x smaller), but attention and motion maps are only meaningful
    with several layer4 positions; below 32 is an error.

    Example: fpar models --image-size 112
    """
    from rich.table import Table

    from fpar.config import ModelConfig
    from fpar.models.registry import build_model, list_models, model_description

    table = Table("model", "parameters", "inputs", "what")
    for name in list_models():
        model = build_model(ModelConfig(name=name, num_classes=num_classes, image_size=image_size))
        count = sum(p.numel() for p in model.parameters())
        table.add_row(name, f"{count:,}", ", ".join(model.input_keys), model_description(name))
    console.print(table)


@app.command("import-egornn", rich_help_panel="Models")
def import_egornn_verb(
    checkpoint: Annotated[Path, typer.Argument(help="State dict file published with Ego-RNN.")],
    model: Annotated[str, typer.Option("--model", help="Which Ego-RNN model it is: rgb, flow or two_stream.")],
    out: Annotated[Path, typer.Option("--out", help="fpar checkpoint to write.")],
    frames: Annotated[int, typer.Option("--frames", help="N frames per clip to store (Ego-RNN used 25).",
                                        min=1, max=MODEL_MAXIMA["frames"])] = 25,
    classes: Annotated[
        Optional[Path], typer.Option("--classes", help="Text file with one class name a line, in class-id order.")
    ] = None,
) -> None:
    """Convert an Ego-RNN state dict (rgb, flow, two-stream) into an fpar checkpoint.

    Example: fpar import-egornn model_rgb_state_dict.pth --model rgb --out egornn_rgb.pt --classes classes.txt
    """
    from fpar.models.egornn_import import import_egornn

    names = None
    if classes is not None:
        if not classes.is_file():
            raise FparError(f"{classes}: class-name file not found")
        try:
            text = classes.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise FparError(f"{classes}: class-name file is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        names = [line.strip() for line in text.splitlines() if line.strip()]
    meta = import_egornn(checkpoint, model, out, frames=frames, class_names=names)
    console.print(
        f"wrote {out}: {meta.model_name}, {meta.config.num_classes} classes, N={meta.frames}, "
        f"L={meta.flow_stack}, input {meta.image_size}x{meta.image_size}"
    )


@app.command("train", rich_help_panel="Train and evaluate")
def train_verb(
    recipe: Annotated[Optional[Path], typer.Argument(help="Recipe YAML, e.g. configs/demo/rgb.yaml.")] = None,
    overrides: Annotated[Optional[list[str]], typer.Argument(
        help="section.key=value overrides, e.g. data.root=runs/prepared train.device=cpu; "
             "data.test_user=all trains one run per held-out user.", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Run dir to write (new, or one holding the same "
                                                              "recipe, which then continues).")] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue this run dir (or folder of "
                                                                    "runs) exactly where it stopped.")] = None,
) -> None:
    """Train a recipe's stages in order into a run dir: recipe.yaml, split.json, metrics.csv,
    TensorBoard events, best.pt / last.pt (per stage under stages/), state.pt for --resume.

    Checkpoints are chosen by validation accuracy on a part of the training users
    (data.selection=val), or on the test user as the reference did (data.selection=test).
    After a kill, `--resume RUN_DIR` continues bit-exactly from the last finished epoch.

    Examples:

      fpar train configs/demo/rgb.yaml --out runs/demo/train/rgb data.root=runs/demo/prepared

      fpar train configs/gtea61/rgb.yaml --out runs/gtea61/rgb data.test_user=all

      fpar train --resume runs/demo/train/rgb
    """
    from fpar.train.run import train

    for run_dir in train(recipe, out, overrides, resume, console=console):
        console.print(f"run dir: {run_dir}", highlight=False, soft_wrap=True)


@app.command("search-alpha", rich_help_panel="Train and evaluate")
def search_alpha_verb(
    recipe: Annotated[Path, typer.Argument(help="Recipe of a model with an MS head (rgb_ms, rgb_ms_feedback).")],
    overrides: Annotated[Optional[list[str]], typer.Argument(
        help="section.key=value overrides, e.g. data.root=runs/prepared.", show_default=False)] = None,
    trials: Annotated[int, typer.Option("--trials", help="Finished trials the study should have.")] = 10,
    out: Annotated[Path, typer.Option("--out", help="Folder for `trials/<n>/` run dirs, best.json, "
                                                    "best_recipe.yaml, trials.png, trials.csv.")] = Path("runs/search"),
    storage: Annotated[Optional[str], typer.Option("--storage", help="Optuna RDB URL shared by workers; "
                                                   "default sqlite:///OUT/study.db.")] = None,
    study: Annotated[Optional[str], typer.Option("--study", help="Study name; default `alpha-<recipe name>`.")] = None,
    tune_lr: Annotated[bool, typer.Option("--tune-lr", help="Also search one factor on every stage's LR.")] = False,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of the TPE sampler (give each "
                                                "worker its own).")] = None,
) -> None:
    """Find alpha (the weight of L_ms; log-uniform on 0.01..10) with Optuna: TPE sampling, median
    pruning on each epoch's validation accuracy. Trials are scored on the validation part, never
    the test user. Rerunning continues the study; workers on several machines share it through
    the same --storage URL and --study name.

    Examples:

      fpar search-alpha configs/demo/rgb_ms.yaml --trials 8 --out runs/demo/search data.root=runs/demo/prepared

      fpar search-alpha configs/gtea61/rgb_ms.yaml --trials 30 --tune-lr --storage sqlite:///shared/study.db
    """
    from fpar.train.search import search_alpha

    search_alpha(recipe, out, trials, overrides or [], storage, study, tune_lr, console=console, seed=seed)

# ---- evaluation and report (fpar.evaluate) ---------------------------------------------------

_EVAL_DEVICE = typer.Option(help="Where the model runs: auto (the GPU if there is one), cpu, cuda, cuda:1, ...")


@app.command("eval", rich_help_panel="Train and evaluate")
def eval_verb(
    runs: Annotated[list[Path], typer.Argument(help="Run dir(s) of `fpar train`, or a group dir (runs.json): "
                                                    "each run is evaluated. With --fuse: the runs to fuse.")],
    checkpoint: Annotated[str, typer.Option(help="best (by validation accuracy) or last.")] = "best",
    split: Annotated[str, typer.Option(help="test (the held-out user) or val.")] = "test",
    segments: Annotated[Optional[int], typer.Option(
        help="Flow windows averaged per sample (flow-reading models). With --fuse: the flow runs' count (RGB "
             "runs read one clip); unset, each run's saved evaluation is used whatever its count.",
        show_default="Ego-RNN's protocol: 5 for a flow run, 1 for the others")] = None,
    fuse: Annotated[bool, typer.Option("--fuse", help="Late fusion of the runs' saved scores: softmax, then "
                                                      "the weighted mean of the probabilities.")] = False,
    weights: Annotated[Optional[str], typer.Option(help="--fuse: comma-separated weights, one per run.",
                                                   show_default="equal")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="--fuse: folder for the fused evaluation.")] = None,
    device: Annotated[str, _EVAL_DEVICE] = "auto",
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Samples per batch.", min=1,
                                                      show_default="the recipe's data.batch_size")] = None,
) -> None:
    """Evaluate trained runs: accuracy, per-class, verb and noun accuracy, confusion matrix, scores for
    fusion; motion-map accuracy and IoU for MS models; order-only / object-only pair accuracy on
    `fpar synth` data.

    Writes `RUN/eval/<checkpoint>-<split>/` (metrics.json, per_class.csv, confusion.json/.csv/.png,
    scores.csv, motion.png); deterministic.

    Examples:

      fpar eval runs/rgb --checkpoint best --split test

      fpar eval --fuse runs/rgb runs/flow --weights 1,1.5 --out runs/fused_rgb_flow
    """
    options = {"device": device, "batch_size": batch_size}
    if fuse:
        from fpar.evaluate.fusion import fuse_runs

        if out is None:
            raise FparError("--fuse needs --out DIR: the folder for the fused evaluation")
        try:
            parsed = [float(w) for w in parse_list(weights)] if weights else None
        except ValueError as exc:
            raise FparError(f"--weights {weights!r}: expected comma-separated numbers, e.g. 1,1.5") from exc
        results = [fuse_runs(runs, out, parsed, checkpoint, split, segments=segments, **options)]
    else:
        from fpar.evaluate.evaluation import evaluate_path

        given = [name for name, value in (("--weights", weights), ("--out", out)) if value is not None]
        if given:  # without --fuse they would be ignored, and the user would think the runs were fused
            raise FparError(f"{' and '.join(given)} {'need' if len(given) > 1 else 'needs'} --fuse (late fusion of "
                            "the runs); without it each run is evaluated on its own")
        results = [result for run in runs
                   for result in evaluate_path(run, checkpoint, split, segments=segments,
                                                 **options)]
    from fpar.evaluate.outputs import summary_line

    for result in results:
        console.print(summary_line(result.folder, result.metrics), highlight=False, soft_wrap=True)


@app.command("report", rich_help_panel="Train and evaluate")
def report_verb(
    runs: Annotated[list[Path], typer.Argument(help="Run dirs, group dirs (runs.json: splits or seeds, shown "
                                                    "as mean ± std) or `fpar eval --fuse` folders.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for table.md, table.csv, curves.png, curves/.")],
    checkpoint: Annotated[str, typer.Option(help="best or last.")] = "best",
    split: Annotated[str, typer.Option(help="test or val.")] = "test",
    device: Annotated[str, _EVAL_DEVICE] = "auto",
) -> None:
    """Compare runs: a Markdown + CSV table (accuracy, protocol, parameters, training time, pair
    accuracies, and the seed's published GTEA61 numbers in their own column) and training curves.

    A run without an up-to-date evaluation is evaluated first (as `fpar eval` would).

    Example: fpar report runs/rgb runs/flow runs/two_stream_all --out runs/report
    """
    from fpar.evaluate.report import build_report

    report = build_report(runs, out, checkpoint, split, device=device)
    console.print(report.table_md.read_text(encoding="utf-8"), highlight=False, soft_wrap=True, markup=False)
    console.print(f"wrote {report.table_md}, {report.table_csv} and {len(report.figures)} figure(s) in {out}",
                  highlight=False, soft_wrap=True)

# ---- explain: cam, app (fpar.explain, fpar.app; docs/cam.md) ------------------------------------

@app.command("cam", rich_help_panel="Explain")
def cam_verb(
    paths: Annotated[list[Path], typer.Argument(
        help="CHECKPOINT INPUT; with --compare two to four checkpoints, then INPUT. INPUT: an image "
             "(png, jpg, bmp, webp) or a video (mp4, avi, webm, mov).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Picture (.png) for an image; .mp4 for a video, with its "
                                                    "contact sheet written beside it as `STEM_sheet.png`.")],
    compare: Annotated[bool, typer.Option("--compare", help="Several checkpoints: the same frames with each "
                                                            "model's CAM side by side.")] = False,
    method: Annotated[str, typer.Option(help="attention (the RGB models' own spatial attention), gradcam or "
                                             "gradcam++ (every model).")] = "gradcam",
    alpha: Annotated[float, typer.Option(help="Opacity of the heat map over the frame, 0 to 1.")] = 0.5,
    max_frames: Annotated[int, typer.Option("--max-frames", help="Refuse longer videos.")] = MAX_FRAMES,
    flow_size: Annotated[str, typer.Option("--flow-size", help="Frame size flow is computed at, as `fpar prepare "
                                                               "--size` (flow and two_stream models).")]
    = format_size(DEFAULT_FRAME_SIZE),
) -> None:
    """Class activation maps of a model's prediction on an image or a video.

    A video is classified as one clip of the checkpoint's N sampled frames; every frame then gets
    the map of that class (docs/cam.md says how), normalised over the whole video, and is
    written to an H.264 mp4 with the predicted class as caption, plus a contact sheet PNG of the
    sampled frames. Prints the top-5 classes.

    Examples:

      fpar cam runs/demo/train/rgb_ms/best.pt clip.mp4 --out cam.mp4 --method gradcam

      fpar cam --compare runs/demo/train/rgb_ms/best.pt runs/demo/train/rgb_ms_feedback/best.pt clip.mp4
      --out compare.mp4
    """
    from tqdm import tqdm

    from fpar.explain.limits import Limits
    from fpar.explain.run import run_cam

    count = len(paths) - 1
    if not (2 <= count <= 4 if compare else count == 1):
        wanted = "two to four checkpoints and an input" if compare else "one checkpoint and an input (or --compare)"
        raise FparError(f"fpar cam: got {len(paths)} paths; expected {wanted}")
    flow_frame_size = parse_size(flow_size, allow_native=True)
    # delay: no bar is drawn for work that fails or ends at once, so an error stays one line
    with tqdm(unit="frame", leave=False, delay=0.5) as bar:
        def progress(what: str, done: int, total: int) -> None:
            bar.set_description(what)
            bar.total, bar.n = total, done
            bar.refresh()

        results, written = run_cam(paths[:-1], paths[-1], out, method, alpha, Limits(max_frames=max_frames),
                                   flow_frame_size, progress)
    for result in results:
        top = ", ".join(f"{name} {p:.1%}" for name, p in result.top(5))
        console.print(f"{result.label}: {result.predicted} (top-5: {top})", highlight=False, soft_wrap=True)
    for path in written:
        console.print(f"wrote {path}", highlight=False, soft_wrap=True)


@app.command("app", rich_help_panel="Explain")
def app_verb(
    runs: Annotated[Path, typer.Option(help="Folder searched for checkpoints (*.pt).")] = Path("runs/demo"),
    port: Annotated[int, typer.Option(help="Local port of the page.", min=1, max=65535)] = 8501,
    address: Annotated[str, typer.Option(help="Address to serve on; 127.0.0.1 keeps it on this machine.")]
    = "127.0.0.1",
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", help="Refuse larger uploads.")] = MAX_MEGABYTES,
    max_frames: Annotated[int, typer.Option("--max-frames", help="Refuse longer videos.")] = MAX_FRAMES,
) -> None:
    """Start the Streamlit app: upload an image or a video, pick one to four models, compare their CAMs.

    Needs the `app` extra (`pip install -e '.[app]'`). Stop it with Ctrl-C.

    Example: fpar app --runs runs/demo --port 8501
    """
    from fpar.app.launch import AppSettings, launch
    from fpar.explain.limits import Limits

    if max_upload_mb <= 0 or max_frames < 1:
        raise FparError("--max-upload-mb must be > 0 and --max-frames at least 1")
    if not runs.is_dir():
        console.print(labelled("warning:", "yellow", f"{runs}: no such folder yet; the page lists the "
                               "checkpoints that appear under it"), soft_wrap=True)
    console.print(f"fpar app on http://{address}:{port} (checkpoints under {runs}); Ctrl-C stops it", highlight=False)
    launch(AppSettings(runs, Limits(max_upload_mb, max_frames)), port, address)


@app.command("bench", rich_help_panel="Evaluate")
def bench_verb(
    device: Annotated[str, typer.Option(help="cpu or cuda (the training, inference and CAM sections; "
                                             "prepare and loading run on the CPU).")] = "cpu",
    quick: Annotated[bool, typer.Option("--quick", help="Toy sizes, few repeats, no torch.compile: under a "
                                                        "minute, checks the report is whole (CI), not speed.")] = False,
    json_file: Annotated[Optional[Path], typer.Option("--json", help="Also write the whole result here.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="torch CPU threads.", show_default="torch's; 1 with --quick")]
    = None,
    only: Annotated[str, typer.Option(help="Comma-separated sections to run.")]
    = "prepare,loading,training,inference,cam",
    repeats: Annotated[Optional[int], typer.Option(help="Timed repeats of each candidate (the median is "
                                                        "reported): more give steadier ratios on a noisy "
                                                        "machine; the timed part takes proportionally longer.",
                                                   show_default="3; 1 with --quick")] = None,
) -> None:
    """Measure fpar's speed in one run: prepare (per flow method and worker count, with the share of
    each part), data loading (vs a naive PIL loader), training steps (fp32, bf16, channels_last,
    torch.compile, and with --device cuda steps replayed from CUDA graphs, vs a reference-style
    baseline), inference, FLOP rates, and CAM video.

    Medians of repeats after warm-up; candidates are timed in turns; the load average is printed
    beside the figures. The full run took 7-9 minutes on 2 idle CPU cores (much longer on a busy machine).

    Examples:

      fpar bench --quick --json bench.json

      fpar bench --only prepare,loading --json runs/bench_data.json

      fpar bench --only training --repeats 7 --json runs/bench_training.json
    """
    from fpar.bench.run import problems, run_bench, write_json
    from fpar.bench.table import tables

    result = run_bench(device, quick, threads, tuple(parse_list(only)), repeats=repeats,
                       progress=lambda section: console.print(f"bench: {section}...", highlight=False))
    for table in tables(result):
        console.print(table)
    if json_file is not None:
        console.print(f"wrote {write_json(result, json_file)}", highlight=False, soft_wrap=True)
    for problem in problems(result):
        console.print(labelled("incomplete:", "yellow", problem), soft_wrap=True)


# ---- end of verbs ------------------------------------------------------------------------------


def main() -> None:
    """Entry point: run the Typer app, turning FparError into a one-line message and exit code 1."""
    try:
        app()  # standalone: Typer prints usage errors and exits with their codes itself
    except FparError as exc:
        if _state["debug"]:
            raise
        console.print(labelled("error:", "bold red", one_line(exc)), soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()

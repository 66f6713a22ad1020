"""The bench's result as rich tables, one per section (the JSON holds everything; these, the headlines)."""

from __future__ import annotations

from rich.table import Table


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def tables(result: dict) -> list[Table]:
    """The tables of the sections `result` has, in the order of the run."""
    makers = {"machine": _machine, "prepare": _prepare, "loading": _loading, "training": _training,
              "feedback": _feedback, "inference": _inference, "cam": _cam}
    return [make(result) for key, make in makers.items() if result.get(key)]


def _machine(result: dict) -> Table:
    m = result["machine"]
    title = (f"{m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), {m['device']}; "
             f"load average {m['load_average_start']} -> {m['load_average_end']}")
    table = Table("machine", title=title)
    table.add_row(f"{'quick (toy sizes: not speed figures)' if result['quick'] else 'full'} run of "
                  f"{', '.join(result['sections'])}, {m['seconds']:.0f} s; medians of {m['timed_repeats']} "
                  "timed repeats")
    return table


def _prepare(result: dict) -> Table:
    p = result["prepare"]
    parts = list(p["rows"][0]["share"])
    prep = Table("flow", "workers", "frames/s", "CPU ms/frame", "frames/s, cores free", *[f"{part} %" for part in parts],
                 "load",
                 title=f"(a) prepare at {p['size']}: quality IoU {p['quality']['motion_map_iou']:.2f}, "
                       f"background residual {p['quality']['plain_residual']:.2f} -> "
                       f"{p['quality']['warp_residual']:.2f} px/frame")
    for r in p["rows"]:
        prep.add_row(r["method"], str(r["workers"]), _f(r["frames_per_s"], 1), _f(r["cpu_ms_per_frame"], 1),
                     _f(r["frames_per_s_if_cores_free"], 0),
                     *[_f(100 * r["share"][part], 0) for part in parts], _f(r["load_average"]))
    return prep


def _loading(result: dict) -> Table:
    loading = result["loading"]
    wait = loading["loader_wait"]
    load = Table("dataset", "workers", "clips/s (cache)", "clips/s (no cache)", "naive clips/s", "x naive",
                 "x naive (no cache)", "load",
                 title=f"(b) loading at {loading['image_size']}, N={loading['frames']}; the {wait['amp']} rgb "
                       f"step waits {100 * wait['wait_share']:.1f}% for data with {wait['workers']} workers "
                       f"({100 * wait['no_cache_wait_share']:.1f}% without the frame cache)")
    for r in loading["rows"]:
        load.add_row(r["dataset"], str(r["workers"]), _f(r["clips_per_s"], 1), _f(r["no_cache_clips_per_s"], 1),
                     _f(r["naive_clips_per_s"], 1), _f(r["speedup"]), _f(r["no_cache_speedup"]),
                     _f(r["load_average"]))
    return load


def _training(result: dict) -> Table:
    variants = list(dict.fromkeys(v for r in result["training"] for v in r["step_s"]))
    train = Table("scale", "model", "stage", *[f"{v} s" for v in variants], "best x ref", "equal", "load",
                  title="(c) training step (median s per batch); x ref = reference-style time / fpar time")
    for r in result["training"]:
        speedups = r.get("speedup_vs_reference")
        best = max(speedups.values()) if speedups else None
        name = r["model"] + (f" ({r['feedback_mode']})" if r["feedback_mode"] else "")
        train.add_row(r["scale"], name, r["stage"], *[_f(r["step_s"].get(v), 3) for v in variants], _f(best),
                      {True: "yes", False: "NO"}.get(r.get("equal_within_tolerance"), "-"), _f(r["load_average"]))
    return train


def _feedback(result: dict) -> Table:
    variants = list(dict.fromkeys(k.removeprefix("ratio_") for e in result["feedback"].values() for k in e
                                  if k.startswith("ratio_")))
    feedback = Table("scale/mode", *[f"x rgb_ms {v}" for v in variants], "pass 1 share (fp32)", "saved MB (rgb_ms)",
                     title="feedback model vs rgb_ms training the same parameters, each variant's three steps "
                           "timed in one set of turns; (>= f): the floor of previous_frame's per-frame form "
                           "(its frame chain's forward)")
    for key, e in result["feedback"].items():
        feedback.add_row(key, *[_with_floor(e, v) for v in variants], _f(e.get("pass1_share_fp32")),
                         f"{e['saved_activations_mb']:.0f} ({e['rgb_ms_saved_activations_mb']:.0f})")
    return feedback


def _with_floor(entry: dict, variant: str) -> str:
    floor = entry.get(f"floor_{variant}")
    return _f(entry.get(f"ratio_{variant}")) + ("" if floor is None else f" (>= {floor:.2f})")


def _inference(result: dict) -> Table:
    inference = result["inference"]
    mm = inference["matmul_gflops"]
    infer = Table("scale", "model", "fp32 s/clip", "bf16 s/clip", "GFLOP/clip", "% of matmul fp32", "% bf16",
                  title=f"(d, f) inference, one clip; matmul {mm['fp32']:.0f} GFLOP/s fp32, {mm['bf16']:.0f} bf16")
    for r in inference["rows"]:
        infer.add_row(r["scale"], r["model"], _f(r["latency_s"]["fp32"], 3), _f(r["latency_s"]["bf16"], 3),
                      _f(r["gflop_per_clip"], 1), _f(100 * r["fraction_of_matmul"]["fp32"], 0),
                      _f(100 * r["fraction_of_matmul"]["bf16"], 0))
    return infer


def _cam(result: dict) -> Table:
    c = result["cam"]
    cam = Table("method", "seconds", "s per video-second",
                title=f"(e) fpar cam, {c['model']} at {c['scale']}, {c['video_seconds']:g} s video at {c['fps']} fps "
                      f"{c['size']}")
    for r in c["rows"]:
        cam.add_row(r["method"], _f(r["seconds"], 1), _f(r["seconds_per_video_second"]))
    return cam

"""`train.cuda_graphs`: where steps are replayed from a CUDA graph, and that a replayed step trains as
an eager one does. The GPU tests run where CUDA is (the build machine has none: they ran on a lent
H100, docs/bench.md "GPU"); the decision and its errors are tested everywhere."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import TINY, stage_yaml, write_recipe
from fpar.config import StageConfig, TrainConfig
from fpar.errors import ConfigError
from fpar.train.cuda_graphs import GraphedStep, use_cuda_graphs
from fpar.train.run import train
from fpar.train.stages import make_optimizer, make_scheduler

CUDA = torch.device("cuda")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on a GPU machine)")


def test_auto_captures_only_where_it_can_and_on_says_why_not() -> None:
    assert use_cuda_graphs(TrainConfig(), CUDA, processes=1)
    assert not use_cuda_graphs(TrainConfig(cuda_graphs="off"), CUDA, processes=1)
    blocked = [(TrainConfig(), torch.device("cpu"), 1, "needs a CUDA device, and this run trains on cpu"),
               (TrainConfig(amp="fp16"), CUDA, 1, "GradScaler"),
               (TrainConfig(compile=True), CUDA, 1, "train.compile"),
               (TrainConfig(), CUDA, 2, "2 training processes")]
    for cfg, device, processes, why in blocked:
        assert not use_cuda_graphs(cfg, device, processes)
        cfg.cuda_graphs = "on"
        with pytest.raises(ConfigError, match=f"train.cuda_graphs on: .*{why}"):
            use_cuda_graphs(cfg, device, processes)
    with pytest.raises(ConfigError, match="train.cuda_graphs 'yes': expected one of auto, on, off"):
        use_cuda_graphs(TrainConfig(cuda_graphs="yes"), CUDA, processes=1)


def test_a_recipe_asking_for_graphs_on_a_cpu_is_refused_before_anything_is_written(
        prepared_root: Path, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, "rgb", [stage_yaml("s1", ["lstm", "classifier"])])
    with pytest.raises(ConfigError, match="train.cuda_graphs on: it needs a CUDA device"):
        train(recipe, tmp_path / "run", [*TINY, f"data.root={prepared_root}", "train.device=cpu",
                                         "train.cuda_graphs=on"])
    assert not (tmp_path / "run").exists()


class _FakeCuda:
    """Stand-ins for torch.cuda's graph and stream calls, so GraphedStep's decisions (when to warm
    up, capture, replay or run eagerly) are tested on a CPU too; the GPU tests below check that
    the real graphs compute what eager steps do."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[str] = []
        events = self.events

        class Graph:
            def replay(self) -> None:
                events.append("replay")

        @contextmanager
        def graph(_graph: Graph, capture_error_mode: str = "global") -> Iterator[None]:
            events.append(f"capture ({capture_error_mode})")
            yield

        class Stream:
            def wait_stream(self, _other: Stream) -> None:
                pass

        for name, value in (("CUDAGraph", Graph), ("graph", graph), ("Stream", Stream),
                            ("stream", lambda _stream: nullcontext()), ("current_stream", Stream)):
            monkeypatch.setattr(torch.cuda, name, value)


def test_graphed_step_warms_up_captures_replays_and_runs_other_shapes_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = _FakeCuda(monkeypatch)
    net = nn.Linear(3, 2)
    stage = StageConfig(name="s", trains=["all"], lr=0.1)
    optimizer = make_optimizer(net, stage, {n: 0.1 for n, _ in net.named_parameters()})

    def step(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        static = graphed.inputs.get("x") is batch["x"]
        capturable = optimizer.param_groups[0]["capturable"]
        cuda.events.append("step" + (" on the graph's inputs" if static else "") + (" capturable" if capturable else ""))
        return batch["x"].sum()

    graphed = GraphedStep(step, optimizer, net)
    batches = [{"x": torch.randn(size, 3), "id": [f"clip{i}"] * size} for i, size in enumerate([4, 4, 4, 2, 4, 4, 4])]
    for index, batch in enumerate(batches):
        graphed(batch)
        if index == 2:
            torch.testing.assert_close(graphed.inputs["x"], batch["x"])  # copied in before the replay
        if index == 4:
            optimizer.param_groups[0]["lr"] = 0.01  # as the scheduler does between epochs
        if index == 5:
            net.eval()
    assert cuda.events == [
        "step",  # the warm-up, eager
        "capture (thread_local)", "step on the graph's inputs capturable", "replay",  # the next of its shapes
        "replay",
        "step",  # a smaller batch: eager, and not captured
        "replay",
        "capture (thread_local)", "step on the graph's inputs capturable", "replay",  # a new learning rate
        "capture (thread_local)", "step on the graph's inputs capturable", "replay",  # new train/eval modes
    ]
    assert graphed.captures == 3 and optimizer.param_groups[0]["capturable"] is False
    assert list(graphed.inputs) == ["x"]  # tensors only: a list of clip ids is passed along as it is


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


@needs_cuda
def test_replayed_steps_train_as_eager_steps_do() -> None:
    """Full batches with a smaller one among them (eager, replays after it), an LR change and then a
    switch of BatchNorm to eval mode (each a new capture): the weights, BN statistics and losses
    equal an eager twin's (fp64: no TF32)."""
    stage = StageConfig(name="s", trains=["all"], lr=0.05, milestones=[1], gamma=0.1)
    nets, optimizers, schedulers = [], [], []
    for _ in range(2):
        torch.manual_seed(0)
        net = _Net().to(CUDA, torch.float64).train()  # BN in train mode: its running statistics are updated too
        optimizer = make_optimizer(net, stage, {n: 0.05 for n, _ in net.named_parameters()})
        nets.append(net), optimizers.append(optimizer), schedulers.append(make_scheduler(optimizer, stage))

    def step_of(net: nn.Module, optimizer: torch.optim.Optimizer):
        def step(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            loss = nn.functional.cross_entropy(net(batch["x"]), batch["y"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return loss
        return step

    eager, graphed = step_of(nets[0], optimizers[0]), GraphedStep(step_of(nets[1], optimizers[1]), optimizers[1], nets[1])
    captured = []
    for index, size in enumerate([6, 6, 6, 3, 6, 6, 6, 6, 6, 6, 6]):
        batch = {"x": torch.randn(size, 3, 8, 8, device=CUDA, dtype=torch.float64),
                 "y": torch.randint(0, 4, (size,), device=CUDA)}
        expected, got = eager(batch).item(), graphed(batch).item()
        assert math.isclose(got, expected, rel_tol=1e-10), index
        captured.append(graphed.captures)
        if index == 5:
            for scheduler in schedulers:
                scheduler.step()
        if index == 7:
            for net in nets:
                net.bn.eval()
    assert captured == [0, 1, 1, 1, 1, 1, 2, 2, 3, 3, 3]  # warm-up; first capture; the LR's; BN eval's
    assert not any(group["capturable"] for group in optimizers[1].param_groups)  # set for a capture only
    for (name, a), b in zip(nets[0].state_dict().items(), nets[1].state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12, msg=name)


@needs_cuda
def test_training_on_a_gpu_replays_the_steps_end_to_end(prepared_root: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The feedback model in previous_frame mode, two epochs with an LR step between them: the run
    completes with finite metrics, and its steps were replayed from a graph of each LR."""
    captures = []
    capture = GraphedStep._capture
    monkeypatch.setattr(GraphedStep, "_capture", lambda self, *args: (captures.append(1), capture(self, *args)))
    recipe = write_recipe(tmp_path, "rgb_ms_feedback", [stage_yaml(
        "s3", ["lstm", "classifier", "layer4_convs", "ms_head", "feedback"], 2, "    milestones: [1]\n")])
    train(recipe, tmp_path / "run", [*TINY, f"data.root={prepared_root}", "train.device=cuda",
                                     "train.cuda_graphs=on", "model.feedback_mode=previous_frame"])
    assert len(captures) == 2
    with (tmp_path / "run" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and all(math.isfinite(float(r[k])) for r in rows for k in ("train_loss", "val_loss"))

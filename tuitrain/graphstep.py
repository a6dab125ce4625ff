"""The whole training step as one CUDA graph (``--cuda-graphs``).

At the notes' batch of 100 a small model's step is bound by kernel launches: forward, backward, the
divergence guard and the optimizer are hundreds of small kernels, each a few microseconds of Python
and driver time. Captured once in a CUDA graph, a step is one replay. What the graph needs, as
PyTorch's "whole network capture" recipe says (torch.cuda.graphs): static inputs (the batch is
gathered inside the graph from the data set already on the GPU, by a static index buffer the host
fills each step), static gradients (set to None before capture, so backward writes them from the
graph's pool and every replay overwrites them), an optimizer whose step keeps its state and count
on the device (a fused one, or one built ``capturable=True``), and a learning rate the graph reads
from device memory (swapped in as a tensor while capturing; each replay copies the group's float
there when a schedule or a person changed it).

What stays outside the graph, on the host at its own intervals: commands (between steps), step
records (the window's sums and the gradient norm are graph outputs, read as before), histograms
(the static gradients hold the last step's), the schedule, checkpoints, validation. The first
steps after arming run as usual on a side stream (PyTorch's warm-up before capture); an odd last
batch, whose shape differs, runs as usual too, its gradients written into the static ones. A load
(new optimizer tensors) or a device switch arms again: the next steps warm up and capture anew.

Without CUDA (``capture=False``) the same step runs as written, without a graph: that is what the
tests check against the usual path on the CPU, bitwise.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

from tuitrain.config import cuda_graphs_refusal
from tuitrain.errors import first_line

WARMUP_STEPS = 3
"""Steps run as usual before a capture (on a side stream): lazy initialisations (cuBLAS workspaces,
the optimizer's state, autograd's buffers) happen there, not inside the graph."""


def refusal(engine: Any) -> str | None:
    """Why this run cannot replay its step as a CUDA graph (one line), or None when it can."""
    cfg, opt = engine.config, engine.optimizer
    if engine.device.type != "cuda":
        return f"--cuda-graphs needs a CUDA device; this run is on {engine.device}"
    if engine.dist:
        return "--cuda-graphs is for one process; a distributed run's gradients go through DDP's hooks"
    together = cuda_graphs_refusal(cfg)
    if together:
        return together
    if engine.closure:
        return f"--cuda-graphs cannot capture {type(opt).__name__}: its step evaluates the loss several times"
    if not capturable(opt):
        flag = "capturable=True" if "capturable" in opt.defaults else "fused=True"
        return f"--cuda-graphs needs an optimizer whose step a CUDA graph can capture: {type(opt).__name__} was built without {flag}"
    if not resident(engine.data, engine.device):
        return ("--cuda-graphs needs the training data on the GPU: a built-in data set, or tensors of under "
                "a GiB (a Dataset or DataLoader is read batch by batch on the host)")
    return None


def capturable(optimizer: torch.optim.Optimizer) -> bool:
    """Whether a CUDA graph can capture this optimizer's step: every group built capturable=True where
    the optimizer has that switch (Adam's step refuses a capture otherwise, fused or not), else fused
    (SGD: no step count to keep)."""
    if "capturable" in optimizer.defaults:
        return all(g.get("capturable") for g in optimizer.param_groups)
    return bool(optimizer.defaults.get("fused"))


def resident(data: Any, device: torch.device) -> bool:
    """Whether the training split lies on ``device`` and can be gathered there by a device index."""
    return hasattr(data, "gather") and data.train_device() == device


def capturable_kwargs(optimizer_class: Callable[..., Any]) -> dict:
    """What a built-in optimizer of no fused kernel needs to be captured: capturable=True, where it takes it."""
    try:
        takes = "capturable" in inspect.signature(optimizer_class).parameters
    except (TypeError, ValueError):
        takes = False
    return {"capturable": True} if takes else {}


def set_capturable(optimizer: torch.optim.Optimizer, on: bool) -> None:
    """Put every group's ``capturable`` flag to ``on`` and each step count where that needs it (on the
    parameter's device when capturable or fused, else on the CPU). A loaded optimizer state brings the
    flag of the machine that saved it; this run's own setting must win (a capturable step on the CPU fails)."""
    has = "capturable" in optimizer.defaults
    for group in optimizer.param_groups:
        if not has and "capturable" not in group:
            continue
        group["capturable"] = on
        on_device = on or bool(group.get("fused"))
        for p in group["params"]:
            state = optimizer.state.get(p) or {}
            if isinstance(state.get("step"), torch.Tensor):
                state["step"] = state["step"].to(p.device if on_device else "cpu", torch.float32)
    if "capturable" in optimizer.defaults:
        optimizer.defaults["capturable"] = on


class WholeStep:
    """Runs an engine's training steps, forward to optimizer step, as replays of one CUDA graph
    (``engine``: a tuitrain.engine.Engine, which imports this module).

    ``run(order, b)`` does what ``Engine.training_step`` and the device part of
    ``Engine.optimizer_step`` do for batch ``b`` of the epoch's ``order``; the engine does the rest
    (records, histograms, the schedule) as for any step.
    """

    def __init__(self, engine: Any, capture: bool = True):
        self.engine = engine
        self.capture = capture and engine.device.type == "cuda"
        self.device = engine.device
        self.batch_size = engine.config.batch_size
        self.idx = torch.zeros(self.batch_size, dtype=torch.long, device=self.device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.norm: torch.Tensor | None = None
        """The gradient norm the graph computes each replay (a graph output, overwritten each step)."""
        self.lrs: list[torch.Tensor] = []
        self.lr_seen: list[float] = []
        self.warm = 0
        self.replays = 0
        self.captures = 0
        self.failed = ""
        """Why the graph cannot be used (one line): the run then goes on without graphs, and this
        step's forward and backward are done; the engine's optimizer_step does the rest as usual."""
        self.hyper: list[dict] = []
        """Each group's other hyperparameters as captured: the graph holds them as constants."""
        self._order: tuple[torch.Tensor, torch.Tensor] | None = None

    def arm(self) -> None:
        """Forget the graph: the next steps warm up and capture again (a load, a device switch)."""
        self.graph, self.norm, self.warm = None, None, 0
        self.engine.optimizer.zero_grad(set_to_none=True)  # gradients are re-made from the next graph's pool

    def _on_device(self, order: torch.Tensor) -> torch.Tensor:
        """The epoch's order on the device: copied once an epoch, not per step."""
        if order.device == self.device:
            return order
        if self._order is None or self._order[0] is not order:
            self._order = (order, order.to(self.device))
        return self._order[1]

    def run(self, order: torch.Tensor, b: int) -> None:
        """Train on batch ``b`` of ``order``: replay the graph, or run the step as usual while warming
        up, for an odd last batch, or without CUDA."""
        order = self._on_device(order)
        idx = order[b * self.batch_size : (b + 1) * self.batch_size]
        if len(idx) != self.batch_size or not self.capture:
            self._eager(idx)
            return
        self.idx.copy_(idx)
        if self.graph is None and self.warm < WARMUP_STEPS:
            self._warm_up()
            return
        if self.graph is None:
            self._capture()
        elif not self.failed:
            self._check_constants()
        if self.failed:  # this batch's forward and backward; the engine steps the optimizer as usual
            self.engine.optimizer.zero_grad(set_to_none=True)
            self.engine.training_step(self.engine.data.gather(self.idx))
            return
        self._replay()

    def _step(self, idx: torch.Tensor) -> None:
        """One step as the engine writes it: forward, loss, backward, window; guard, clip, optimizer."""
        engine = self.engine
        engine.training_step(engine.data.gather(idx))
        engine.step_device(measure=True)

    def _eager(self, idx: torch.Tensor) -> None:
        """The step without a graph, exactly as the usual path (gradients start as None, so a parameter
        the batch does not reach is not updated). After a capture the gradients are the graph's
        static tensors: they are put back afterwards, holding this step's (zero where none came),
        so the graph and the histograms still see them."""
        params = list(self.engine.model.parameters())
        static = [p.grad for p in params]
        self.engine.optimizer.zero_grad(set_to_none=True)
        self._step(idx)
        for p, kept in zip(params, static, strict=True):
            if kept is None:
                continue
            if p.grad is None:
                kept.zero_()
            else:
                kept.copy_(p.grad)
            p.grad = kept

    def _warm_up(self) -> None:
        """A step as usual on a side stream, as PyTorch's recipe warms up before a capture."""
        self.engine.optimizer.zero_grad(set_to_none=True)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            self._step(self.idx)
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.warm += 1

    def _capture(self) -> None:
        """Record the step on this batch into a new graph (nothing runs: the replay that follows does).
        A failure (a model that reads a value back, changes shape...) leaves the run on the usual path."""
        engine = self.engine
        groups = engine.optimizer.param_groups
        floats = [g["lr"] for g in groups]
        counted = engine.window.count
        engine.optimizer.zero_grad(set_to_none=True)  # backward makes them from the graph's pool
        self.lrs = [torch.full((), float(lr), device=self.device) for lr in floats]
        graph = torch.cuda.CUDAGraph()
        try:
            for group, lr in zip(groups, self.lrs, strict=True):
                group["lr"] = lr
            # thread_local: CUDA calls of other threads are no error while this one captures.
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                self._step(self.idx)
        except Exception as exc:  # torch's capture errors: the run goes on without graphs
            # A sync inside the step breaks the capture, and ending it raises anew: the first error says why.
            why = first_line(exc.__context__ if exc.__context__ is not None else exc, named=True)
            self.failed = f"the training step could not be captured as a CUDA graph ({why})"
            return
        finally:
            for group, lr in zip(groups, floats, strict=True):
                group["lr"] = lr
            engine.window.count = counted  # capturing ran the host side of window.add once: not a step
        self.graph, self.norm, self.lr_seen = graph, engine.grad_norm_tensor, list(floats)
        self.hyper = self._constants()
        self.captures += 1

    def _constants(self) -> list[dict]:
        """Each group's hyperparameters but the LR (betas, momentum, weight decay...), as the step reads them."""
        keys = [k for k in self.engine.optimizer.defaults if k not in ("lr", "params")]
        return [{k: g.get(k) for k in keys} for g in self.engine.optimizer.param_groups]

    def _check_constants(self) -> None:
        """A graph holds the hyperparameters it was captured with: a schedule that changes another
        than the LR each step (OneCycleLR's cycled momentum) ends the graphs, said in a notice."""
        now = self._constants()
        if now == self.hyper:
            return
        changed = sorted({k for a, b in zip(now, self.hyper, strict=True) for k in a if a[k] != b[k]})
        self.failed = (f"the optimizer's {', '.join(changed)} changed after the capture (a schedule that cycles "
                       f"it?), and a CUDA graph keeps the value it was captured with")

    def _replay(self) -> None:
        engine = self.engine
        for i, group in enumerate(engine.optimizer.param_groups):
            if group["lr"] != self.lr_seen[i]:  # a schedule or a person changed it: the graph reads it here
                self.lrs[i].fill_(group["lr"])
                self.lr_seen[i] = group["lr"]
        assert self.graph is not None and self.norm is not None
        self.graph.replay()
        self.replays += 1
        engine.window.count += self.batch_size
        engine.grad_norm_tensor = self.norm

"""Measured latency: median and spread of timed forwards after warm-up, in torch or in onnxruntime."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from ..devices import model_device, synchronize
from ..modes import eval_mode


def _timed(run: Callable[[], object], repeats: int | None, warmup: int, min_seconds: float,
           max_repeats: int) -> list[float]:
    """Milliseconds of each timed ``run()``, after ``warmup`` untimed ones: ``repeats`` of them, or as many as
    fit in ``min_seconds`` (at least 5, at most ``max_repeats``)."""
    for _ in range(warmup):
        run()
    times: list[float] = []
    start = time.perf_counter()
    while True:
        t = time.perf_counter()
        run()
        times.append((time.perf_counter() - t) * 1000)
        if repeats is not None:
            if len(times) >= repeats:
                return times
        elif len(times) >= max_repeats or (len(times) >= 5 and time.perf_counter() - start >= min_seconds):
            return times


def _summary(times: list[float], batch_size: int, threads: int) -> dict:
    q = statistics.quantiles(times, n=4) if len(times) >= 2 else [times[0]] * 3
    return {"median_ms": round(statistics.median(times), 4), "p25_ms": round(q[0], 4), "p75_ms": round(q[2], 4),
            "repeats": len(times), "batch_size": batch_size, "threads": threads}


@torch.no_grad()
def latency(model: nn.Module, example_input: torch.Tensor, repeats: int | None = None, warmup: int = 3,
            min_seconds: float = 1.0, max_repeats: int = 200) -> dict:
    """Time ``model(example_input)`` in eval mode.

    Runs ``warmup`` untimed forwards, then timed ones until ``min_seconds`` have
    passed (at least 5, at most ``max_repeats``) unless ``repeats`` is given.
    Returns milliseconds: median, 25th and 75th percentile, plus batch size and threads,
    and the device where it is not the CPU (``example_input`` is moved to the model's device).
    """
    device = model_device(model)
    example_input = example_input.to(device)
    synchronize(device)

    def forward():
        model(example_input)
        synchronize(device)  # a GPU queues work: the timer stops when this forward has run

    with eval_mode(model):
        times = _timed(forward, repeats, warmup, min_seconds, max_repeats)
    return {**_summary(times, int(example_input.shape[0]), torch.get_num_threads()),
            **({"device": str(device)} if device.type != "cpu" else {})}


def onnx_latency(path, example_input: torch.Tensor, batches=(1, 64), threads: int | None = None, warmup: int = 3,
                 min_seconds: float = 1.0, max_repeats: int = 200) -> dict:
    """Latency of an exported ONNX model under onnxruntime's CPU provider at each batch size (``batchN`` keys,
    each with :func:`latency`'s fields): what a deployment with onnxruntime sees. ``threads`` (intra-op)
    defaults to torch's, so both runtimes are compared on the same threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out = {}
    for batch in batches:
        feed = {name: example_input[:1].expand(batch, *example_input.shape[1:]).contiguous().cpu().numpy()}
        times = _timed(lambda feed=feed: session.run(None, feed), None, warmup, min_seconds, max_repeats)
        out[f"batch{batch}"] = _summary(times, batch, options.intra_op_num_threads)
    return out


@torch.no_grad()
def paired_speedup(reference: nn.Module, model: nn.Module, example_input: torch.Tensor, rounds: int = 5,
                   **timing) -> dict:
    """How many times faster ``model`` runs ``example_input`` than ``reference``, timed in ``rounds`` rounds of
    reference-then-model, back to back (:func:`latency`'s ``timing`` options for each).

    A shared machine's speed drifts by tens of percent over minutes, so each
    round's ratio compares two timings taken seconds apart, and the round with
    the median ratio is the one reported: ``speedup``, ``reference`` and
    ``model`` (that round's :func:`latency` summaries) and every round's ratio.
    Each model runs its forwards back to back, as a deployed model does:
    alternating the two forward by forward makes both slower (resnet56-fmnist,
    batch 64: the teacher 126-149 ms instead of 70-130, a student 83-98 ms
    instead of 42-55) and measures cold caches instead.
    """
    pairs = [(latency(reference, example_input, **timing), latency(model, example_input, **timing))
             for _ in range(rounds)]
    ratios = [r["median_ms"] / m["median_ms"] for r, m in pairs]
    middle = sorted(range(rounds), key=lambda i: ratios[i])[rounds // 2]
    return {"speedup": ratios[middle], "reference": pairs[middle][0], "model": pairs[middle][1],
            "rounds": [round(r, 4) for r in ratios]}

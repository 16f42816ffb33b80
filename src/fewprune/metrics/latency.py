"""Measured CPU latency: median and spread of timed forwards after warm-up."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from ..devices import model_device, synchronize
from ..modes import eval_mode


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
    with eval_mode(model):
        for _ in range(warmup):
            model(example_input)
        times: list[float] = []
        start = time.perf_counter()
        while True:
            synchronize(device)  # a GPU queues work: time from an idle device to the end of this forward
            t = time.perf_counter()
            model(example_input)
            synchronize(device)
            times.append((time.perf_counter() - t) * 1000)
            if repeats is not None:
                if len(times) >= repeats:
                    break
            elif len(times) >= max_repeats or (len(times) >= 5 and time.perf_counter() - start >= min_seconds):
                break
    q = statistics.quantiles(times, n=4) if len(times) >= 2 else [times[0]] * 3
    return {
        "median_ms": round(statistics.median(times), 4),
        "p25_ms": round(q[0], 4),
        "p75_ms": round(q[2], 4),
        "repeats": len(times),
        "batch_size": int(example_input.shape[0]),
        "threads": torch.get_num_threads(),
        **({"device": str(device)} if device.type != "cpu" else {}),
    }

"""torch-pruning's dependency graph, built safely on any model.

torch-pruning traces through autograd, so a model whose parameters have
``requires_grad=False`` (a typical frozen teacher) would yield no groups and
be silently left unpruned. ``dependency_graph`` flips ``requires_grad`` on for
the trace only and restores every flag afterwards.
"""

from __future__ import annotations

import traceback
import warnings
from contextlib import contextmanager

import torch
import torch_pruning as tp
from torch import nn

from ..modes import eval_mode

PRUNABLE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)  # the layers whose output channels are pruned


@contextmanager
def gradients_enabled(model: nn.Module):
    """Temporarily make every parameter require grad (and grad mode on); restore the flags after."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(True)
        with torch.enable_grad():
            yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@contextmanager
def memory_guard(what: str, hint: str = "", share: float = 0.5, most: int | None = None):
    """Turn running out of memory inside the block into a clear MemoryError instead of the OOM killer.

    torch-pruning's grouping expands index mappings through every reshape, and
    on some models (torchvision's MaxViT) that needs tens of GB. Within the
    block the process's address space is capped at its current size plus
    ``share`` of the memory still available (and at most ``most`` bytes more), so the
    allocation fails in Python (and the caller's other work survives). Where the limit cannot be set
    (not Linux, or a lower hard limit) the block runs unguarded.
    """
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        with open("/proc/self/status") as f:
            size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        with open("/proc/meminfo") as f:
            available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
        cap = size + int(min(share * available, most if most is not None else available))
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        if soft != resource.RLIM_INFINITY:
            cap = min(cap, soft)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (ImportError, OSError, StopIteration, ValueError):
        yield
        return
    try:
        yield
    except MemoryError:
        raise MemoryError(f"{what} ran out of memory (capped at {cap / 2 ** 30:.1f} GiB of address space so this "
                          "process survives)" + (f"; {hint}" if hint else "")) from None
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


class UnsupportedModel(ValueError):
    """torch-pruning cannot analyse this model's channel dependencies; the message says where it stopped."""


@contextmanager
def torch_pruning_errors(model: nn.Module, doing: str):
    """Re-raise a crash inside torch-pruning as :class:`UnsupportedModel`, naming the model and where it failed.

    Its tracer breaks on some layouts (ShuffleNet's channel shuffle divides by
    zero in its reshape mapping); a bare ZeroDivisionError would say nothing.
    """
    try:
        yield
    except MemoryError:  # memory_guard's message already says what happened
        raise
    except Exception as error:
        frames = [f for f in traceback.extract_tb(error.__traceback__) if "torch_pruning" in f.filename]
        if not frames:
            raise
        where = f"{frames[-1].name} ({frames[-1].filename.split('torch_pruning')[-1].lstrip('/')}:{frames[-1].lineno})"
        raise UnsupportedModel(
            f"torch-pruning could not {doing} the channel dependencies of {type(model).__name__}: "
            f"{type(error).__name__}: {error} in {where}; fewprune cannot prune this architecture yet") from error


def dependency_graph(model: nn.Module, example_input: torch.Tensor) -> tp.DependencyGraph:
    """Build torch-pruning's DependencyGraph in eval mode, leaving the model's flags and mode as they were."""
    with eval_mode(model):
        with gradients_enabled(model), warnings.catch_warnings():
            # Unwrapped parameters (cls tokens, position embeddings) sit in protected groups; the warning is noise.
            warnings.filterwarnings("ignore", message="Unwrapped parameters")
            with torch_pruning_errors(model, "trace"):
                return tp.DependencyGraph().build_dependency(model, example_inputs=example_input)


def is_out_fn(fn) -> bool:
    return getattr(fn, "__name__", "") == "prune_out_channels"


def is_in_fn(fn) -> bool:
    return getattr(fn, "__name__", "") == "prune_in_channels"

"""Running cells as Ray tasks (``pip install fewprune[ray]``), locally or on a cluster."""

from __future__ import annotations

from .config import SweepConfig


def run_on_ray(jobs: list, config: SweepConfig, record, address: str | None = None,
               cpus_per_cell: int = 1) -> None:
    """Submit every job (a :class:`Cell` or a ceiling) as a Ray task and ``record`` each row as it completes.

    Each task runs the job exactly as in-process, with the same seed, so the
    plans (and, on one thread, the numbers) are the same.
    """
    try:
        import ray
    except ImportError:
        raise ImportError("the ray executor needs Ray: pip install 'fewprune[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 **({} if address else {"num_cpus": None}))

    @ray.remote(num_cpus=cpus_per_cell)
    def task(job, eval_limit, latency, threads: int, plugin_specs: list[str]) -> dict:
        import torch

        from .. import plugins

        plugins.load_all(plugin_specs)  # a worker process registers the sweep's own parts too (same paths)
        torch.set_num_threads(threads)
        return job.run(eval_limit, latency)

    try:
        pending = [task.remote(c, config.eval_limit, config.latency, cpus_per_cell, config.plugins or [])
                   for c in jobs]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            record(ray.get(ready[0]))
    finally:
        if started_here:
            ray.shutdown()

"""Running cells as Ray tasks (``pip install fewprune[ray]``), locally or on a cluster."""

from __future__ import annotations

from .config import SweepConfig


def run_on_ray(jobs: list, config: SweepConfig, record, address: str | None = None,
               cpus_per_cell: int = 1, log=print) -> bool:
    """Submit every job (a :class:`Cell` or a ceiling) as a Ray task and ``record`` each row as it completes;
    returns whether it stopped early.

    Each task runs the job exactly as in-process, with the same seed, so the
    plans (and, on one thread, the numbers) are the same. A row measured by
    other fewprune code than this process runs (a worker started after the
    files changed, or a cluster with another copy) is not recorded: the
    other tasks are cancelled, so no key holds another code's figure.
    """
    from ..metrics import loaded_source

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
            row = ray.get(ready[0])
            ran = (row.get("versions") or {}).get("fewprune_source")
            if ran is not None and ran != loaded_source():
                for ref in pending:
                    ray.cancel(ref)
                log(f"{config.name}: a worker ran fewprune source {ran}, this sweep {loaded_source()}: its row is "
                    "not recorded and the other tasks are cancelled; give the workers this code and run it again")
                return True
            record(row)
        return False
    finally:
        if started_here:
            ray.shutdown()

"""The grid on Ray: one actor per model keeps that model loaded; each cell goes to the actor of its target (a
tuning cell to the actor of the model it tunes). Actors set their own torch thread count and ask Ray for a CPU
(and a GPU where the cluster has one: Ray hides GPUs from workers that ask for none). Only the config, the cell
and the output folder travel; prompts and results go through files, so the table equals the local executor's.
"""

from __future__ import annotations


def run_on_ray(config_dict: dict, stage1: list, stage2: list, out: str, address: str | None, progress) -> list[dict]:
    import ray

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    resources = ray.cluster_resources()
    n = len(config_dict["models"])
    gpus = 1 if resources.get("GPU", 0) >= n else 0
    cpus = min(1.0, resources.get("CPU", 1) / n)  # every actor must fit at once, or cells wait on one forever

    @ray.remote(num_cpus=cpus, num_gpus=gpus)
    class ModelWorker:
        def __init__(self, threads: int = 1):
            import torch

            torch.set_num_threads(threads)

        def run(self, cell):
            from ptfer_core.grid import run_cell

            return run_cell(config_dict, cell, out)

    workers = {name: ModelWorker.remote() for name in config_dict["models"]}
    rows: list[dict] = []
    for stage in (stage1, stage2):
        pending = {workers[cell.target].run.remote(cell): cell for cell in stage}
        results = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(ready[0])
            results[cell.key] = ray.get(ready[0])
            progress(results[cell.key])
        from ptfer_core.grid import with_shared

        for cell in stage:  # the plan's order, so both executors write identical tables
            rows += with_shared(results[cell.key]["rows"], cell)
    for worker in workers.values():
        ray.kill(worker)
    return rows

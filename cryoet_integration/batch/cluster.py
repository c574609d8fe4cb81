"""The dask.distributed side: an in-process LocalCluster or an existing scheduler, and the
worker plugin that makes each worker a good citizen of its machine.

Every worker process runs one tomogram at a time (:mod:`.tasks`) with its share of the CPU
threads (torch, scipy's FFTs, and the BLAS/OpenMP pools through ``OMP_NUM_THREADS``), so N
workers on a host use its cores once, not N times; and it keeps the models it loads
(:func:`segmentation.checkpoint.keep_models_loaded`), so a model is read once per worker,
not once per tomogram.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from distributed import Client, LocalCluster, WorkerPlugin

from ..commands.options import available_cpus
from .tasks import set_task_threads


class CryovisWorker(WorkerPlugin):
    """Set a worker's CPU threads and keep its models loaded.

    ``threads`` per worker; None: ``OMP_NUM_THREADS`` of the worker if set, else the
    worker's dask thread count (``dask worker --nworkers K`` splits a host's cores into K).
    """

    name = "cryovis"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def setup(self, worker: Any) -> None:
        from ..segmentation.checkpoint import keep_models_loaded

        threads = self.threads
        if threads is None:
            env = os.environ.get("OMP_NUM_THREADS", "")
            threads = int(env) if env.isdigit() and int(env) > 0 else \
                max(1, int(worker.state.nthreads))
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(threads)
        try:
            import torch
        except ImportError:
            torch = None
        if torch is not None:
            torch.set_num_threads(threads)
        set_task_threads(threads)
        keep_models_loaded()


def threads_per_worker(workers: int) -> int:
    """CPU threads each of ``workers`` local worker processes gets (at least 1)."""
    return max(1, available_cpus() // workers)


def connect(scheduler: str | None, workers: int, threads: int | None,
            dashboard: bool = True) -> tuple[Client, LocalCluster | None]:
    """A client of the scheduler at ``scheduler``, or of a new LocalCluster of ``workers``
    worker processes (one dask thread each; the tomogram's own CPU threads are
    ``threads``, by default the host's CPUs divided among the workers) on 127.0.0.1.

    Returns ``(client, cluster)``; ``cluster`` is None for an existing scheduler.
    """
    cluster = None
    # Workers' lifecycle chatter (e.g. a nanny ending a worker at shutdown) is not the
    # user's business; errors still show.
    logging.getLogger("distributed").setLevel(logging.ERROR)
    if scheduler is None:
        threads = threads or threads_per_worker(workers)
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1",
                               dashboard_address="127.0.0.1:0" if dashboard and
                               _has_dashboard() else None,
                               env={"OMP_NUM_THREADS": str(threads)})
        client = Client(cluster)
    else:
        client = Client(scheduler, timeout="30s")
    client.register_plugin(CryovisWorker(threads))
    return client, cluster


def _has_dashboard() -> bool:
    try:
        import bokeh  # noqa: F401 - the dashboard needs it
    except ImportError:
        return False
    return True


def dashboard_link(client: Client) -> str | None:
    """The dask dashboard's address, when the scheduler serves one."""
    try:
        info = client.scheduler_info()
    except OSError:
        return None
    if "dashboard" not in info.get("services", {}):
        return None
    return client.dashboard_link

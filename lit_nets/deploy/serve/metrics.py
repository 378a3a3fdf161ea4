"""Prometheus metrics of the service (requests by status, latency, batch sizes), shared by its processes."""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger(__name__)


class Metrics:
    """Prometheus metrics of the service, from every one of its processes (prometheus-client's multiprocess mode:
    each process writes its figures to files in one folder, ``/metrics`` adds them up)."""

    def __init__(self) -> None:
        self.requests = self.latency = self.batch = None

    def start(self, folder: str) -> None:
        """Before any process of the service starts: the folder the processes share (inherited by them)."""
        self._before = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder

    def stop(self) -> None:
        """After the service: the variable as it was (the folder is deleted; a process started later from this
        one, an MLflow server for one, would fail to write its own metrics there)."""
        before = getattr(self, "_before", None)
        if before is None:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        else:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = before

    def _ensure(self) -> bool:
        if self.requests is None and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import Counter, Histogram

            self.requests = Counter("lit_nets_requests", "POST /predict requests by HTTP status", ["status"])
            self.latency = Histogram(
                "lit_nets_request_seconds",
                "time from a request's arrival to its answer",
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            )
            self.batch = Histogram(
                "lit_nets_batch_size", "requests run together by the model", buckets=(1, 2, 4, 8, 16, 32, 64, 128)
            )
        return self.requests is not None

    def observe(self, status: int, seconds: float) -> None:
        if self._ensure():
            self.requests.labels(status=str(status)).inc()
            self.latency.observe(seconds)

    def observe_batch(self, size: int) -> None:
        if self._ensure():
            self.batch.observe(size)

    def page(self, model: dict[str, Any]) -> tuple[bytes, int, None, str]:
        """Response arguments for ``/metrics``: the text: every process's figures, and the model's description."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        escape = lambda v: str(v).replace("\\", "\\\\").replace('"', '\\"')  # noqa: E731
        labels = ",".join(f'{k}="{escape(model[k])}"' for k in ("kind", "source", "classes"))
        info = "# HELP lit_nets_model_info the served model\n# TYPE lit_nets_model_info gauge\n"
        info += f"lit_nets_model_info{{{labels}}} 1.0\n"
        return generate_latest(registry) + info.encode(), 200, None, CONTENT_TYPE_LATEST


metrics = Metrics()

"""The service's lifecycle: the options from the command line to the server in one :class:`ServeOptions`, the
LitServer with the page, ``/info``, ``/health``, ``/ready`` and ``/metrics``, and a stop on SIGTERM or Ctrl-C that
finishes the requests in flight and ends every process of the service."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lit_nets.core.errors import UserError
from lit_nets.deploy.serve.api import ClassifierAPI
from lit_nets.deploy.serve.guard import Limits, RequestGuard, Shared, header_timeout_protocol
from lit_nets.deploy.serve.metrics import metrics
from lit_nets.deploy.serve.model import load

PAGE = Path(__file__).parent / "web" / "index.html"

try:
    import litserve as ls
except ImportError:  # the serve extra is optional: make_server() says how to install it
    ls = None

log = logging.getLogger(__name__)


class Server(ls.LitServer if ls else object):
    """LitServe's server, stopping in an order that answers every request it has taken. LitServe's own shutdown
    closes its queues first, so requests in flight waited for their 30 s timeout and got 500, and a SIGTERM to the
    main process left its children serving; see :func:`run`. The overrides below are LitServe internals, used
    only here."""

    def __init__(self, *args: Any, shared: Shared, stop_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shared, self.stop_timeout, self.cut_off = shared, stop_timeout, 0
        self.uvicorn_graceful_timeout = 2  # what is still open once the drain below is over: idle connections
        self.monitor_internal = 0.5  # LitServe's worker monitor looks every 2 s; its end is waited for below

    def _start_server(self, port: int, num_uvicorn_servers: int, log_level: str, sockets: list, *args, **kwargs):
        workers = super()._start_server(port, num_uvicorn_servers, log_level, sockets, *args, **kwargs)
        # the API servers (forked) have the listening socket; this process keeps none, so that once they close it,
        # connections are refused at once instead of waiting in a backlog that nobody accepts from
        for sock in sockets:
            sock.close()
        return workers

    def _perform_graceful_shutdown(self, manager: Any, uvicorn_workers: dict, shutdown_reason: str = "normal"):
        import time

        self.shared.stopping.set()  # new predictions and /ready: 503; the ones in flight go on
        # LitServe's worker monitor restarts no worker once its event is set. Set from another thread: a proxy's
        # connection is per thread, and this thread's is still inside the wait() the signal broke off
        setter = threading.Thread(target=self._shutdown_event.set, daemon=True)
        setter.start()
        setter.join(timeout=2)
        monitors = [t for t in threading.enumerate() if t.name == "litserve-monitoring"]
        deadline, quiet_since = time.monotonic() + self.stop_timeout, None
        while time.monotonic() < deadline:  # wait until nothing is in flight, and has not been for a moment
            if self.shared.in_flight.value > 0:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > 0.5:
                break
            time.sleep(0.02)
        self.cut_off = self.shared.in_flight.value  # still in flight when the time ran out
        for monitor in monitors:  # it asks the manager process, which is shut down below: let it see the event
            monitor.join(timeout=self.monitor_internal + 1)
        self.shared.drained.set()
        for worker in uvicorn_workers.values():
            worker.terminate()  # uvicorn: stop listening, close the idle connections
        for worker in uvicorn_workers.values():
            worker.join(timeout=self.uvicorn_graceful_timeout + 1)
        alive = {i: w for i, w in uvicorn_workers.items() if w.is_alive()}
        for worker in self.inference_workers:  # they ignore SIGTERM (see ClassifierAPI.setup); nothing to save
            worker.kill()
            worker.join(timeout=5)
        with contextlib.redirect_stderr(io.StringIO()):  # LitServe's shutdown log lines: ours is the one line
            super()._perform_graceful_shutdown(manager, alive, "normal")


@dataclass
class ServeOptions:
    """Every option of ``serve``: declared here once, read from the command line (or ``--config serve.yaml``) by
    jsonargparse, and handed whole to the server, the request guard and the inference workers.

    Args:
        ckpt_path: checkpoint (.ckpt; or best, last, a run folder) or exported .torchscript.pt/.pt2/.onnx.
        host: address to listen on (0.0.0.0: every interface).
        port: port to listen on.
        max_batch_size: requests run together.
        batch_timeout: seconds to wait to fill a batch while requests keep coming.
        max_payload_mb: larger bodies get 413.
        max_pixels: larger images get 400.
        top_k: classes in each answer's top_k.
        accelerator: where the model runs.
        workers: inference processes per device.
        api_key: require this key (X-API-Key header, or Authorization: Bearer KEY) on POST /predict, /docs and
            /openapi.json, and for the training statistics in /info; default: $LIT_NETS_API_KEY, else none.
        header_timeout: seconds for a request's headers (408 after).
        body_timeout: seconds for a request's body (408 after).
        stop_timeout: on SIGTERM/Ctrl-C, seconds to finish the requests in flight.
        max_records: JSON records in one request (413 above).
        max_explained: records explained ("explain": 1) in one request (400 above).
    """

    ckpt_path: str
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch_size: int = 32
    batch_timeout: float = 0.005
    max_payload_mb: float = 4
    max_pixels: int = 4096 * 4096
    top_k: int = 5
    accelerator: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    workers: int = 1
    api_key: str | None = None
    header_timeout: float = 10
    body_timeout: float = 30
    stop_timeout: float = 5
    max_records: int = 1000
    max_explained: int = 100


def make_server(options: ServeOptions) -> Any:
    """The LitServer for a checkpoint or exported model, with the guard, the page, ``/info``, ``/health``
    (the process answers), ``/ready`` (the model is loaded and the service not stopping) and ``/metrics``."""
    if ls is None:
        raise UserError('serving needs LitServe: pip install -e ".[serve]"')
    o = options
    served = load(o.ckpt_path)  # fail here, with a clear message, rather than in a worker process
    max_bytes = int(o.max_payload_mb * 2**20)
    limits = {
        "max_payload_bytes": max_bytes,
        "max_pixels": o.max_pixels,
        "max_records": o.max_records,
        "max_explained": o.max_explained,
        "api_key": o.api_key is not None,
    }
    info, public = {**served.info(), **limits}, {**served.info(statistics=False), **limits}
    shared = Shared()
    api = ClassifierAPI(
        o.ckpt_path,
        o.max_pixels,
        o.top_k,
        o.max_explained,
        max_batch_size=o.max_batch_size,
        batch_timeout=o.batch_timeout,
    )
    limit = Limits(max_bytes, o.body_timeout, o.api_key, o.max_records, public)
    guard = (RequestGuard, {"limits": limit, "shared": shared})
    server = Server(
        api,
        accelerator=o.accelerator,
        workers_per_device=o.workers,
        model_metadata=info,
        healthcheck_path="/ready",
        middlewares=[guard],
        shared=shared,
        stop_timeout=o.stop_timeout,
        restart_workers=True,
    )
    # LitServe answers "/" with a plain "litserve running"; the page replaces that route
    server.app.router.routes = [r for r in server.app.router.routes if getattr(r, "path", None) != "/"]
    from fastapi.responses import HTMLResponse, PlainTextResponse, Response

    page = PAGE.read_text()
    model = {"kind": served.kind, "source": served.source, "classes": len(served.class_names)}
    server.app.add_api_route("/", lambda: HTMLResponse(page), methods=["GET"], include_in_schema=False)
    server.app.add_api_route("/health", lambda: PlainTextResponse("ok"), methods=["GET"], include_in_schema=False)
    server.app.add_api_route(
        "/metrics", lambda: Response(*metrics.page(model)), methods=["GET"], include_in_schema=False
    )
    return server


def serve_command(options: ServeOptions) -> None:
    """An HTTP service and web page for a checkpoint or an exported model.

    POST /predict; GET /health, /ready, /info, /metrics. It runs until SIGTERM or Ctrl-C, then finishes the
    requests it took.
    """
    given = options.api_key
    options.api_key = given if given is not None else os.environ.get("LIT_NETS_API_KEY")
    if options.api_key is not None and not options.api_key.strip():  # --api_key "$KEY" with KEY unset: never no key
        source = "--api_key" if given is not None else "LIT_NETS_API_KEY"
        raise UserError(
            f"serve: {source} is empty (an unset variable?); give the key, or leave it out to serve without one"
        )
    for name in ("max_records", "max_explained"):
        if getattr(options, name) < 1:
            raise UserError(f"serve --{name} must be 1 or more, got {getattr(options, name)}")
    if not Path(options.ckpt_path).is_file():  # best, last or a run folder (an exported file is served as it is)
        from lit_nets.deploy.inference import open_checkpoint

        options.ckpt_path = open_checkpoint(options.ckpt_path).file
    run(options)


def run(args: ServeOptions) -> None:
    """Serve until SIGTERM or SIGINT (Ctrl-C) reaches this process, then stop every process of the service.

    LitServe leaves SIGTERM to Python's default, which ends this process at once and leaves its children (the
    API server, the inference workers, the manager) serving on the port. Here both signals end the wait in
    ``LitServer.run`` as Ctrl-C does; :class:`Server` then stops taking predictions (503), lets those in flight
    finish, and ends its processes; the processes it started ignore Ctrl-C (the terminal sends it to all of
    them) and leave stopping to this one.
    """
    import multiprocessing as mp
    import signal
    import tempfile

    from lit_nets.core import runtime, threads

    runtime.give_back_freed_memory()  # before LitServe forks its processes: they inherit it
    count, why = threads.choose(processes=args.workers)  # each inference worker's share (LIT_NETS_THREADS)
    threads.apply(count)
    print(f"Threads:      {count} per inference worker ({why})", file=sys.stderr, flush=True)
    folder = tempfile.TemporaryDirectory(prefix="lit_nets_metrics_")
    metrics.start(folder.name)
    main_pid, told = os.getpid(), []

    def stop(signum: int, frame: Any) -> None:
        if os.getpid() != main_pid:  # a forked child (LitServe's manager): the main process stops it
            return
        if not told:  # the first one stops the service; more of them change nothing
            told.append(signal.Signals(signum).name)
            raise KeyboardInterrupt

    try:
        server = make_server(args)  # a model it cannot serve ends here, with the variable and folder put back
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        key = " (API key required)" if args.api_key else ""
        print(
            f"serving {args.ckpt_path} on http://{args.host}:{args.port}/{key}  (POST /predict, GET /health, /ready, "
            "/info, /metrics)",
            flush=True,
        )
        server.run(
            host=args.host,
            port=args.port,
            generate_client_file=False,
            log_level="warning",
            http=header_timeout_protocol(args.header_timeout),
        )
    except KeyboardInterrupt:  # a signal before LitServe's wait began: nothing of LitServe's to stop but processes
        pass
    finally:
        for child in mp.active_children():  # whatever did not stop with LitServe (started, but never waited on)
            child.terminate()
            child.join(timeout=5)
            if child.is_alive():
                child.kill()
        metrics.stop()
        folder.cleanup()
    how = f"{told[0] if told else 'shut down'}"
    if server.cut_off:
        print(
            f"stopped ({how}); {server.cut_off} request(s) still in flight after --stop_timeout "
            f"{args.stop_timeout:g} s were cut off",
            flush=True,
        )
    else:
        print(f"stopped ({how}); every request it took was answered", flush=True)

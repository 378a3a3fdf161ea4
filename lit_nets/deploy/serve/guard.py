"""The ASGI guard in front of the API: payload and record limits before a body is read, the API key, JSON depth,
probes answered to HEAD, 503 while stopping, and the header timeout of the HTTP protocol."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

from lit_nets.deploy.serve.metrics import metrics

log = logging.getLogger(__name__)


PROBES = ("/", "/health", "/ready", "/info", "/metrics")  # answered to HEAD as to GET (load balancers' probes)
MAX_JSON_DEPTH = 32  # a record is one level, a list of them two: anything deeper is not a request for this API
MAX_PARTS = 16  # an image request has two fields (file, explain); Starlette answers 500 past its own 1,000


@dataclass
class Limits:
    """What the guard enforces, from ``serve``'s options (:class:`lit_nets.deploy.serve.server.ServeOptions`, where
    each is declared and documented)."""

    max_bytes: int  # --max_payload_mb in bytes
    body_timeout: float  # seconds for the whole body to arrive (a slow client is cut with 408)
    api_key: str | None
    max_records: int  # records in one JSON request (413 above)
    public_info: dict | None  # /info for a client without the key: no training statistics


LOCKED = ("/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc")  # need the API key, when one is set


def has_key(headers: Any, key: str) -> bool:
    """Whether the request carries ``key`` in ``X-API-Key`` or as ``Authorization: Bearer KEY`` (no other scheme)."""
    import hmac

    given = headers.get("x-api-key")
    if given is None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else ""
    return hmac.compare_digest(given.encode(), key.encode())


class Shared:
    """State the processes of the service share (created before LitServe starts them): whether the service is
    stopping, and how many predictions are in flight."""

    def __init__(self) -> None:
        import multiprocessing as mp

        context = mp.get_context("fork")  # LitServe forks its API servers from this process
        self.stopping = context.Event()
        self.drained = context.Event()  # stopping, and nothing in flight: the API server may go
        self.in_flight = context.Value("i", 0)


def json_depth(value: Any) -> int:
    """How deeply ``value`` nests lists and objects, without recursion."""
    depth, level = 0, [(value, 1)]
    while level:
        item, d = level.pop()
        if isinstance(item, (list, dict)):
            depth = max(depth, d)
            level.extend((child, d + 1) for child in (item.values() if isinstance(item, dict) else item))
    return depth


class RequestGuard:
    """ASGI middleware in the API process, in front of LitServe; LitServe has none of this:

    - while the service stops: 503 for new predictions and for ``/ready`` (requests in flight are answered);
    - ``HEAD`` on the probe paths answered as ``GET`` without a body (LitServe's routes are GET only);
    - on ``POST /predict``, before a request is queued: 401 without the API key (when one is set), 413 for a body
      above ``max_bytes`` (by its Content-Length, or counted as it streams in: LitServe's own limit answers only
      after reading it), 408 when the body takes longer than ``body_timeout``, 400 for another content type, a
      multipart body without its boundary, and JSON that does not parse or nests deeper than a request can;
    - request counts by status, latencies and in-flight predictions for ``/metrics``.
    """

    def __init__(self, app: Any, *, limits: Limits, shared: Shared, path: str = "/predict") -> None:
        self.app, self.limits, self.shared, self.path = app, limits, shared, path

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # the API server starts: uvicorn has just taken SIGINT and SIGTERM
            self._leave_stopping_to_the_main_process()
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["method"] == "HEAD" and scope["path"] in PROBES:
            scope, send = {**scope, "method": "GET"}, without_body(send)
        if scope["path"] == "/ready" and self.shared.stopping.is_set():
            return await reply(scope, receive, send, 503, "the service is stopping")
        if self.limits.api_key is not None and scope["path"] in (*LOCKED, "/info"):
            from starlette.datastructures import Headers

            if not has_key(Headers(scope=scope), self.limits.api_key):
                if scope["path"] == "/info":  # what the page needs, without the training data's statistics
                    from starlette.responses import JSONResponse

                    return await JSONResponse({"model": self.limits.public_info})(scope, receive, send)
                return await reply(scope, receive, send, 401, "send the service's API key in the X-API-Key header")
        if scope["path"] != self.path or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        import time

        started, status = time.perf_counter(), [500]

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        with self.shared.in_flight.get_lock():
            self.shared.in_flight.value += 1
        try:
            await self._predict(scope, receive, sending)
        finally:
            with self.shared.in_flight.get_lock():
                self.shared.in_flight.value -= 1
            metrics.observe(status[0], time.perf_counter() - started)

    def _leave_stopping_to_the_main_process(self) -> None:
        """In the API server's process: ignore Ctrl-C, and a SIGTERM the main process did not send. uvicorn would
        otherwise stop at once on a terminal's Ctrl-C or a supervisor's SIGTERM to every process, closing the
        connections of clients between two requests; the main process first answers them 503 (see Server)."""
        import signal

        if threading.current_thread() is not threading.main_thread():
            return
        uvicorn_handler = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: Any) -> None:
            if self.shared.drained.is_set() and callable(uvicorn_handler):  # sent by Server, after the drain
                uvicorn_handler(signum, frame)

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, on_sigterm)

    async def _predict(self, scope: dict, receive: Any, send: Any) -> None:
        """``POST /predict``: the headers checked, the body read within its limits and checked, then replayed to
        LitServe; a refusal is a JSON ``detail`` with its status."""
        from starlette.datastructures import Headers

        headers = Headers(scope=scope)
        refusal = self._refused_by_headers(headers)
        if refusal is not None:
            return await reply(scope, receive, send, *refusal)
        body = await self._read_body(receive)
        if body is None:  # the client went away
            return
        if isinstance(body, tuple):
            return await reply(scope, receive, send, *body, close=body[0] == 408)
        refusal = self._refused_by_body(headers.get("content-type", ""), body)
        if refusal is not None:
            return await reply(scope, receive, send, *refusal)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _refused_by_headers(self, headers: Any) -> tuple[int, str] | None:
        """Stopping, no API key, a declared length above the limit, a content type this API does not take."""
        if self.shared.stopping.is_set():
            return 503, "the service is stopping; send the request again"
        if self.limits.api_key is not None and not has_key(headers, self.limits.api_key):
            return 401, "send the service's API key in the X-API-Key header"
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limits.max_bytes:
            return 413, f"the request is above the limit of {self.limits.max_bytes:,} bytes"
        content_type = headers.get("content-type", "")
        if content_type.startswith("multipart/form-data") and "boundary=" not in content_type:
            return 400, "the multipart upload has no boundary in its Content-Type"
        if not content_type.startswith(("application/json", "multipart/form-data")):
            return 400, "send an image as a multipart/form-data upload (field 'file') or features as application/json"
        return None

    async def _read_body(self, receive: Any) -> bytes | tuple[int, str] | None:
        """The whole body, read within ``--body_timeout`` and ``--max_payload_mb``; a refusal (413, 408) past
        either; None when the client disconnected."""
        import asyncio

        chunks, size, more = [], 0, True
        deadline = asyncio.get_running_loop().time() + self.limits.body_timeout
        try:
            while more:
                message = await asyncio.wait_for(receive(), deadline - asyncio.get_running_loop().time())
                if message["type"] == "http.disconnect":
                    return None
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                more = message.get("more_body", False)
                if size > self.limits.max_bytes:
                    return 413, f"the request is above the limit of {self.limits.max_bytes:,} bytes"
        except asyncio.TimeoutError:
            return 408, f"the body did not arrive within {self.limits.body_timeout:g} s"
        return b"".join(chunks)

    def _refused_by_body(self, content_type: str, body: bytes) -> tuple[int, str] | None:
        """Too many multipart parts; JSON that does not parse, nests too deep or holds too many records."""
        if content_type.startswith("multipart/form-data"):
            boundary = content_type.split("boundary=", 1)[1].split(";")[0].strip().strip('"').encode()
            parts = body.count(b"--" + boundary) - 1  # the closing delimiter is the boundary once more
            if parts > MAX_PARTS:
                return 400, (
                    f"the upload has {parts:,} parts, above the limit of {MAX_PARTS}: send the image as field "
                    "'file' (and 'explain' if you want Grad-CAM)"
                )
            return None
        try:
            parsed = json.loads(body)
            depth = json_depth(parsed)
        except RecursionError:  # json's C parser recurses: a deep enough nesting ends there
            parsed, depth = None, MAX_JSON_DEPTH + 1
        except ValueError as e:  # bad JSON, or an integer of more than 4,300 digits
            return 400, f"the body is not valid JSON ({str(e)[:200]})"
        if isinstance(parsed, list) and len(parsed) > self.limits.max_records:
            return 413, (
                f"the request holds {len(parsed):,} records, above the limit of {self.limits.max_records:,} "
                "per request (serve --max_records); send them in parts"
            )
        if depth > MAX_JSON_DEPTH:
            return 400, f"the JSON nests deeper than {MAX_JSON_DEPTH} levels: send a record or a list of records"
        return None


async def reply(scope: dict, receive: Any, send: Any, status: int, detail: str, close: bool = False) -> None:
    """A JSON ``{"detail": ...}`` answer (``close``: and end the connection, for a client that cannot be read)."""
    from starlette.responses import JSONResponse

    headers = {"connection": "close"} if close or status == 503 else None
    await JSONResponse({"detail": detail}, status, headers=headers)(scope, receive, send)


def without_body(send: Any) -> Any:
    """``send`` for a HEAD request: the GET answer's status and headers, no body."""

    async def sending(message: dict) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return sending


def header_timeout_protocol(seconds: float) -> type:
    """uvicorn's HTTP/1.1 protocol with a limit on the time a request's head (request line and headers) may take:
    uvicorn has none, so a client that sends half a header holds a connection open forever ("slowloris"). The
    timer starts when the connection opens and again after each response, and stops when the head has arrived;
    when it fires the client gets 408 and the connection is closed. (Subclasses uvicorn's H11Protocol, passed
    as uvicorn's ``http`` setting: the one place this module touches uvicorn's internals.)"""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutH11Protocol(H11Protocol):
        head_timer: Any = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self.start_head_timer()

        def start_head_timer(self) -> None:
            self.stop_head_timer()
            self.head_timer = self.loop.call_later(seconds, self.head_too_slow)

        def stop_head_timer(self) -> None:
            if self.head_timer is not None:
                self.head_timer.cancel()
                self.head_timer = None

        def handle_events(self) -> None:
            super().handle_events()
            if self.conn.their_state is not h11.IDLE:  # the head is in (or the connection is done with)
                self.stop_head_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self.start_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self.stop_head_timer()
            super().connection_lost(exc)

        def head_too_slow(self) -> None:
            self.head_timer = None
            if not self.transport.is_closing():
                body = json.dumps({"detail": f"the request's headers did not arrive within {seconds:g} s"}).encode()
                head = "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                self.transport.write(f"{head}content-length: {len(body)}\r\n\r\n".encode() + body)
                self.transport.close()

    return HeaderTimeoutH11Protocol

"""Serve a classifier over HTTP with LitServe: ``POST /predict``, ``GET /health``, ``GET /info``, a page at ``/``.

    python -m lit_nets serve --ckpt_path best.ckpt --port 8000     # or an exported .torchscript.pt, .pt2 or .onnx
    curl -F file=@digit.png localhost:8000/predict                 # image models: PNG or JPEG upload
    curl -H 'Content-Type: application/json' -d '{"alcohol": 13.2, ...}' localhost:8000/predict   # tabular models

Requests are batched across clients (``--max_batch_size``, ``--batch_timeout``). Hardened for the open network:
bodies above ``--max_payload_mb`` get 413 before they are read, images are decoded only when their header says PNG
or JPEG and at most ``--max_pixels`` pixels (no decompression bombs), and anything else that is wrong gets 400 with
a JSON ``detail`` naming the problem. One bad request never fails the good requests batched with it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import logging
import os
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from lit_nets.core.data.schema import ImageSchema, TabularSchema, read_schema
from lit_nets.core.errors import UserError
from lit_nets.core.models.deployable import probabilities, top_k

log = logging.getLogger(__name__)
PAGE = Path(__file__).parent / "web" / "index.html"
IMAGE_FORMATS = ("PNG", "JPEG")


# -- the model, from a checkpoint or an exported file -------------------------------------------------------
@dataclass
class Served:
    """A model ready to serve: raw inputs in, logits out, and what a client needs to know about it."""

    forward: Any
    class_names: list[str]
    input_shape: list[int]
    schema: ImageSchema | TabularSchema | None
    source: str
    explainer: Any = None  # the Lightning classifier, for Grad-CAM or attributions (checkpoints only)

    @property
    def kind(self) -> str:
        return self.schema.kind if self.schema is not None else "image"

    def info(self, statistics: bool = True) -> dict[str, Any]:
        """What ``/info`` says of the model; ``statistics`` False: without the example record, whose values are the
        training data's medians (what a service with an API key tells a client without the key)."""
        info = {"kind": self.kind, "class_names": self.class_names, "input_shape": self.input_shape}
        explains = self.explainer is not None
        info.update(source=self.source, gradcam=explains and self.kind == "image")
        info["attributions"] = explains and self.kind == "tabular"
        if self.kind == "tabular":
            info["features"] = list(self.schema.features)
            if statistics:
                info["example"] = example_record(self.schema)
        return info


def load(path: str, device: str = "cpu") -> Served:
    """A checkpoint (``.ckpt``) or an exported TorchScript, pt2 or ONNX file with its JSON sidecar."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"--ckpt_path {path}: no such file")
    if file.suffix == ".ckpt":
        from lit_nets.core.models.deployable import Deployable
        from lit_nets.deploy.explain import has_conv_layers
        from lit_nets.deploy.inference import load_classifier

        model = load_classifier(file, device)
        net = Deployable.of(model)
        schema = read_schema(model.schema)
        explains = has_conv_layers(model) or (isinstance(schema, TabularSchema) and hasattr(model.net, "embed"))
        explainer = model if explains else None
        return Served(net, list(model.class_names), list(model.input_shape), schema, file.name, explainer)
    sidecar = file.with_name(file.name + ".json")
    if not sidecar.is_file():
        raise UserError(f"{path}: not a checkpoint (.ckpt), and there is no {sidecar.name} beside it to say what it is")
    meta = json.loads(sidecar.read_text())
    fmt = meta.get("format")
    if fmt == "torchscript":
        with warnings.catch_warnings():  # torch deprecates TorchScript (the README says so)
            warnings.simplefilter("ignore", FutureWarning)
            net = torch.jit.load(str(file), map_location=device).eval()
    elif fmt == "pt2":
        net = torch.export.load(str(file)).module().to(device)
    elif fmt == "onnx":
        net = _onnx_runner(file, device)
    else:
        raise UserError(
            f"{path}: a {fmt} export needs its architecture to run; serve the checkpoint, or export to "
            "torchscript, pt2 or onnx"
        )
    schema = read_schema(meta.get("schema"))
    return Served(net, list(meta["class_names"]), list(meta["input_shape"][1:]), schema, file.name)


def _onnx_runner(file: Path, device: str):
    try:
        import onnxruntime
    except ImportError:
        raise UserError('serving ONNX needs onnxruntime: pip install -e ".[export]"') from None
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda") else None
    session = onnxruntime.InferenceSession(str(file), providers=providers or ["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"x": x.cpu().numpy()})[0])


def example_record(table: TabularSchema) -> dict[str, Any]:
    """A valid request for a tabular model: each numeric feature at its training median, each text one at its
    first category."""
    record = {c["name"]: c["fill"] for c in table.numeric}
    record.update({c["name"]: table.known_categories(c)[0] for c in table.categorical})
    return {name: record[name] for name in table.features}


# -- requests -----------------------------------------------------------------------------------------------
class Rejected(Exception):
    """A request the service answers with an HTTP error and a JSON ``detail``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass
class Item:
    """One decoded request: its model inputs (one row per record or image), or why it was rejected."""

    x: torch.Tensor | None = None
    many: bool = False  # a JSON list of records: answer with a list
    explain: bool = False
    error: Rejected | None = None
    result: dict[str, Any] = field(default_factory=dict)


def read_image(
    data: bytes, channels: int, size: tuple[int, int], max_pixels: int, crop_pct: float | None = None
) -> torch.Tensor:
    """An uploaded image as uint8 (C, H, W) at the model's size, prepared as its data was (``crop_pct``: see
    :func:`lit_nets.core.data.image_io.decode`). The header is read first (Pillow reads no pixels on open): only PNG and
    JPEG are decoded, and only when they hold at most ``max_pixels`` pixels."""
    from PIL import Image, UnidentifiedImageError

    from lit_nets.core.data.image_io import BadImage, decode

    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as header:
            width, height = header.size
    except Image.DecompressionBombError:  # Pillow's own limit (179 M pixels) is higher than ours: the same answer
        width = height = None
    except (UnidentifiedImageError, OSError):
        raise Rejected(400, "the file is not a PNG or JPEG image") from None
    if width is None:
        raise Rejected(400, f"the image is larger than the limit of {max_pixels:,} pixels")
    if width * height > max_pixels:
        raise Rejected(400, f"the image is {width}x{height} pixels, above the limit of {max_pixels:,}")
    try:
        return decode(data, channels, size, name="the image", crop_pct=crop_pct)
    except BadImage as e:
        raise Rejected(400, str(e)) from None


def wants_attributions(body: Any, table: TabularSchema) -> bool:
    """Whether a tabular request asks for the columns' contributions: ``"explain": 1`` (or true) in its record, or in
    any record of a list (unless the model has a feature called ``explain``)."""
    if "explain" in table.features:
        return False
    records = body if isinstance(body, list) else [body]
    return any(isinstance(r, dict) and str(r.get("explain", "")).lower() in ("1", "true", "yes") for r in records)


def read_records(body: Any, table: TabularSchema) -> torch.Tensor:
    """A JSON record (object) or a list of them as model inputs, encoded as in training. Every record must name
    every feature; a numeric feature takes a finite number (or a numeric string), a categorical one a string or
    a number; ``null``, ``NaN`` and the training file's missing markers (``""``, ``"NA"``, ``"?"``, ...) mean
    missing: the training median, or the category ``(missing)``, as for a CSV file."""
    import numpy as np
    import pandas as pd

    from lit_nets.core.data.schema import FLOAT32_MAX

    records = body if isinstance(body, list) else [body]
    if not records or not all(isinstance(r, dict) for r in records):
        raise Rejected(400, "send a JSON object of feature values, or a non-empty list of them")
    numeric = {c["name"] for c in table.numeric}
    markers = missing_markers(table)
    rows = []
    for i, record in enumerate(records):
        where = f"record {i + 1} of {len(records)}: " if isinstance(body, list) else ""
        absent = [name for name in table.features if name not in record]
        if absent:
            shown = ", ".join(repr(a) for a in absent[:5]) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
            raise Rejected(
                400,
                f"{where}missing feature(s) {shown}; send null for a value you do not know "
                f"(GET /info has an example record)",
            )
        row = {}
        for name in table.features:
            value = record[name]
            problem = None
            if value is None or (isinstance(value, str) and value.strip() in markers):
                value = None
            elif isinstance(value, (bool, dict, list)):
                problem = f"{json.dumps(value)} is not a feature value"
            elif name in numeric:
                number = _number(value)
                if number is None:
                    problem = f"{json.dumps(value)} is not a number"
                elif number != number:  # NaN: missing, as null
                    value = None
                elif not abs(number) <= FLOAT32_MAX:
                    problem = f"{json.dumps(value)} is not a finite number the model can take"
                else:
                    value = number
            if problem:
                wanted = "number" if name in numeric else "category as text"
                raise Rejected(400, f"{where}feature {name!r}: {problem}; send a {wanted}, or null if unknown")
            row[name] = value
        rows.append(row)
    # numbers as one float block (NaN where missing), built at once: column by column took seconds for 5,000
    names = [c["name"] for c in table.numeric]
    numbers = np.array([[row[n] for n in names] for row in rows], dtype=np.float64).reshape(len(rows), len(names))
    frame = pd.DataFrame(numbers, columns=names)
    if table.categorical:
        texts = {c["name"]: [row[c["name"]] for row in rows] for c in table.categorical}
        frame = pd.concat([frame, pd.DataFrame(texts)], axis=1)
    try:
        encoded = table.encode(frame, "request")
    except UserError as e:
        raise Rejected(400, str(e)) from None
    return torch.from_numpy(encoded)


def _number(value: Any) -> float | None:
    """A JSON number or numeric string as a float (``inf`` and ``NaN`` included, for the caller to judge)."""
    try:
        if isinstance(value, (int, float, str)):
            return float(value)
    except OverflowError:  # an integer of hundreds of digits: beyond any float, as inf is
        return float("inf")
    except ValueError:
        return None
    return None


def missing_markers(table: Any) -> set[str]:
    """Strings that mean "missing" in a request: those of the training file (pandas' defaults, and the data's
    ``na_values``, which the schema records)."""
    from pandas._libs.parsers import STR_NA_VALUES  # pandas' own default list; there is no public name for it

    return set(STR_NA_VALUES) | set(getattr(table, "missing_markers", ["?"]))


# -- the LitServe API ---------------------------------------------------------------------------------------
try:
    import litserve as ls
except ImportError:  # the serve extra is optional: make_server() says how to install it
    ls = None


class IdleLoop(ls.loops.BatchedLoop if ls else object):
    """LitServe's batched loop asks its request queue for work every millisecond, also when there is none: an
    idle service used about 16% of a core (this process and the manager process that holds the queue). This one,
    after a round with no requests, waits for the next with a blocking ``get``, which returns as soon as one
    arrives, and runs it at once with whatever else is already queued (no batching window for a request that
    finds the service idle). While requests keep coming, LitServe's own batching applies (``--batch_timeout``)."""

    idle = True

    def get_batch_requests(self, lit_api: Any, request_queue: Any, transport: Any) -> tuple[list, list]:
        from queue import Empty

        if not self.idle:
            batch = super().get_batch_requests(lit_api, request_queue, transport)
        else:
            try:
                first = request_queue.get(timeout=1.0)
            except Empty:
                return [], []
            window, lit_api.batch_timeout = lit_api.batch_timeout, 0  # LitServe's "take what is queued" mode
            try:
                batch = super().get_batch_requests(lit_api, Prefetched(request_queue, first), transport)
            finally:
                lit_api.batch_timeout = window
        self.idle = not batch[0] and not batch[1]
        return batch


class Prefetched:
    """A queue whose next item was taken already: handed out first, then the queue's own."""

    def __init__(self, queue: Any, first: Any) -> None:
        self.queue, self.first = queue, [first]

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        return self.first.pop() if self.first else self.queue.get(block, timeout)

    def get_nowait(self) -> Any:
        return self.first.pop() if self.first else self.queue.get_nowait()


class ClassifierAPI(ls.LitAPI if ls else object):
    """Decode each request on its own (a bad one becomes an error for that request only), run the valid ones as
    one batch, answer each with label, probability, top-k and all class probabilities."""

    def __init__(self, path: str, max_pixels: int, top_k: int, max_explained: int = 100, **batching: Any) -> None:
        super().__init__(**batching, loop=IdleLoop())
        self.path, self.max_pixels, self.top_k, self.max_explained = path, max_pixels, top_k, max_explained

    def setup(self, device: str) -> None:
        import signal

        # Ctrl-C reaches every process in the terminal, and a supervisor may SIGTERM all of them (systemd does):
        # this process is ended by the main one (Server), once the requests in flight are answered
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        from lit_nets.core import runtime

        runtime.give_back_freed_memory()  # this process is spawned: a fresh malloc
        self.device = device
        self.model = load(self.path, device)

    def decode_request(self, request) -> Item:  # no annotation: LitServe then hands over the parsed form or JSON
        try:
            return self._decode(request)
        except Rejected as e:
            return Item(error=e)
        except Exception:  # our bug, not the client's: logged with its traceback; never fails the batch it is in
            log.exception("cannot decode a request")
            detail = "the service failed to read this request (its log has the details); the request was not used"
            return Item(error=Rejected(500, detail))  # no exception text: it may quote source paths

    def _decode(self, request: Any) -> Item:
        model = self.model
        is_form = hasattr(request, "getlist")
        if model.kind == "tabular":
            if is_form:
                raise Rejected(400, "this is a tabular model: send JSON feature values, not a form upload")
            explain = wants_attributions(request, model.schema)
            count = len(request) if isinstance(request, list) else 1
            if explain and count > self.max_explained:  # each explained record runs 128 backward passes
                limit = self.max_explained
                raise Rejected(
                    400,
                    f"explain: {count} records to explain (a request with explain explains each of "
                    f"its records), above the limit of {limit} per request (serve --max_explained); "
                    "send fewer",
                )
            return Item(read_records(request, model.schema), many=isinstance(request, list), explain=explain)
        upload = request.get("file") if is_form else None
        if upload is None or not hasattr(upload, "file"):
            raise Rejected(400, "this is an image model: upload a PNG or JPEG as multipart form field 'file'")
        channels, *size = model.input_shape
        crop_pct = getattr(model.schema, "crop_pct", None)  # a photo model's: resized, centre-cropped
        image = read_image(upload.file.read(), channels, tuple(size), self.max_pixels, crop_pct)
        wants_cam = str(request.get("explain", "")).lower() in ("1", "true", "yes")
        return Item(image[None], explain=wants_cam)

    def batch(self, inputs: list[Item]) -> list[Item]:
        return list(inputs)  # items hold different numbers of rows: predict() concatenates the valid ones

    def predict(self, x: Item | list[Item]) -> Item | list[Item]:
        items = x if isinstance(x, list) else [x]
        valid = [item for item in items if item.error is None]
        if valid:
            metrics.observe_batch(len(valid))
            inputs = torch.cat([item.x for item in valid]).to(self.device)
            with torch.inference_mode():
                probs = probabilities(self.model.forward(inputs)).cpu()
            start = 0
            for item in valid:
                answers = [self._answer(p) for p in probs[start : start + len(item.x)]]
                item.result = {"predictions": answers} if item.many else answers[0]
                start += len(item.x)
                if item.explain and self.model.explainer is not None and self.model.kind == "image":
                    item.result["gradcam"] = self._gradcam(item.x[0])
                elif item.explain and self.model.explainer is not None:
                    self._contributions(item, answers)
        return items if isinstance(x, list) else items[0]

    def unbatch(self, output: list[Item]) -> list[Item]:
        return output

    def encode_response(self, output: Item) -> Any:
        from fastapi.responses import JSONResponse

        if output.error is not None:
            return JSONResponse({"detail": output.error.detail}, status_code=output.error.status)
        return output.result

    def _answer(self, probs: torch.Tensor) -> dict[str, Any]:
        names = self.model.class_names
        (top,) = top_k(probs[None], names, self.top_k)
        return {
            "label": top[0][0],
            "probability": round(top[0][1], 6),
            "top_k": [{"label": name, "probability": round(p, 6)} for name, p in top],
            "probabilities": {name: round(float(p), 6) for name, p in zip(names, probs, strict=True)},
        }

    def _contributions(self, item: Item, answers: list[dict[str, Any]]) -> None:
        """Each column's contribution to each record's explained output (:mod:`lit_nets.deploy.attributions`), added to
        the records' answers, largest first."""
        import numpy as np

        from lit_nets.deploy.attributions import integrated_gradients

        found = integrated_gradients(self.model.explainer, item.x)
        names = self.model.class_names
        for i, answer in enumerate(answers):
            order = np.argsort(-np.abs(found.values[i]))
            answer["explanation"] = {
                "explained": names[int(found.explained[i])],
                "baseline": round(float(found.baseline[i]), 6),
                "output": round(float(found.output[i]), 6),
                "contributions": {found.columns[j]: round(float(found.values[i, j]), 6) for j in order},
            }

    def _gradcam(self, image: torch.Tensor) -> str:
        """The Grad-CAM overlay of one image as a PNG data URL, enlarged so a 28-pixel digit can be seen."""
        from PIL import Image
        from torchcam.methods import GradCAM

        from lit_nets.deploy.explain import default_layer, explain_one

        model = self.model.explainer
        with torch.enable_grad(), GradCAM(model, default_layer(model), tuple(model.input_shape)) as cam:
            _, overlay = explain_one(model, cam, image)
        scale = max(1, 224 // max(overlay.size))
        overlay = overlay.resize((overlay.width * scale, overlay.height * scale), Image.Resampling.NEAREST)
        buffer = io.BytesIO()
        overlay.save(buffer, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


# -- the HTTP layer in front of the workers -----------------------------------------------------------------
PROBES = ("/", "/health", "/ready", "/info", "/metrics")  # answered to HEAD as to GET (load balancers' probes)
MAX_JSON_DEPTH = 32  # a record is one level, a list of them two: anything deeper is not a request for this API
MAX_PARTS = 16  # an image request has two fields (file, explain); Starlette answers 500 past its own 1,000


@dataclass
class Limits:
    """What the guard enforces; documented in ``serve --help`` and the README."""

    max_bytes: int
    body_timeout: float = 30.0  # seconds for the whole body to arrive (a slow client is cut with 408)
    api_key: str | None = None
    max_records: int = 1000  # records in one JSON request (413 above)
    public_info: dict | None = None  # /info for a client without the key: no training statistics


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
        import asyncio

        from starlette.datastructures import Headers

        if self.shared.stopping.is_set():
            return await reply(scope, receive, send, 503, "the service is stopping; send the request again")
        headers = Headers(scope=scope)
        if self.limits.api_key is not None and not has_key(headers, self.limits.api_key):
            return await reply(scope, receive, send, 401, "send the service's API key in the X-API-Key header")
        max_bytes = self.limits.max_bytes
        too_large = f"the request is above the limit of {max_bytes:,} bytes"
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            return await reply(scope, receive, send, 413, too_large)
        content_type = headers.get("content-type", "")
        if content_type.startswith("multipart/form-data") and "boundary=" not in content_type:
            return await reply(scope, receive, send, 400, "the multipart upload has no boundary in its Content-Type")
        if not content_type.startswith(("application/json", "multipart/form-data")):
            detail = "send an image as a multipart/form-data upload (field 'file') or features as application/json"
            return await reply(scope, receive, send, 400, detail)
        chunks, size, more = [], 0, True
        deadline = asyncio.get_running_loop().time() + self.limits.body_timeout
        try:
            while more:
                message = await asyncio.wait_for(receive(), deadline - asyncio.get_running_loop().time())
                if message["type"] == "http.disconnect":
                    return
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                more = message.get("more_body", False)
                if size > max_bytes:
                    return await reply(scope, receive, send, 413, too_large)
        except asyncio.TimeoutError:
            detail = f"the body did not arrive within {self.limits.body_timeout:g} s"
            return await reply(scope, receive, send, 408, detail, close=True)
        body = b"".join(chunks)
        if content_type.startswith("multipart/form-data"):
            boundary = content_type.split("boundary=", 1)[1].split(";")[0].strip().strip('"').encode()
            parts = body.count(b"--" + boundary) - 1  # the closing delimiter is the boundary once more
            if parts > MAX_PARTS:
                detail = (
                    f"the upload has {parts:,} parts, above the limit of {MAX_PARTS}: send the image as field "
                    "'file' (and 'explain' if you want Grad-CAM)"
                )
                return await reply(scope, receive, send, 400, detail)
        if content_type.startswith("application/json"):
            try:
                parsed = json.loads(body)
                depth = json_depth(parsed)
            except RecursionError:  # json's C parser recurses: a deep enough nesting ends there
                parsed, depth = None, MAX_JSON_DEPTH + 1
            except ValueError as e:  # bad JSON, or an integer of more than 4,300 digits
                return await reply(scope, receive, send, 400, f"the body is not valid JSON ({str(e)[:200]})")
            if isinstance(parsed, list) and len(parsed) > self.limits.max_records:
                detail = (
                    f"the request holds {len(parsed):,} records, above the limit of {self.limits.max_records:,} "
                    "per request (serve --max_records); send them in parts"
                )
                return await reply(scope, receive, send, 413, detail)
            if depth > MAX_JSON_DEPTH:
                detail = f"the JSON nests deeper than {MAX_JSON_DEPTH} levels: send a record or a list of records"
                return await reply(scope, receive, send, 400, detail)

        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


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


class Metrics:
    """Prometheus metrics of the service, from every one of its processes (prometheus-client's multiprocess mode:
    each process writes its figures to files in one folder, ``/metrics`` adds them up)."""

    def __init__(self) -> None:
        self.requests = self.latency = self.batch = None

    def start(self, folder: str) -> None:
        """Before any process of the service starts: the folder the processes share (inherited by them)."""
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder

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


def make_server(
    path: str,
    *,
    max_payload_mb: float = 4,
    max_pixels: int = 4096 * 4096,
    top_k: int = 5,
    max_batch_size: int = 32,
    batch_timeout: float = 0.005,
    accelerator: str = "auto",
    workers: int = 1,
    api_key: str | None = None,
    body_timeout: float = 30.0,
    stop_timeout: float = 5.0,
    max_records: int = 1000,
    max_explained: int = 100,
) -> Any:
    """The LitServer for a checkpoint or exported model, with the guard, the page, ``/info``, ``/health``
    (the process answers), ``/ready`` (the model is loaded and the service not stopping) and ``/metrics``."""
    if ls is None:
        raise UserError('serving needs LitServe: pip install -e ".[serve]"')
    served = load(path)  # fail here, with a clear message, rather than in a worker process
    max_bytes = int(max_payload_mb * 2**20)
    limits = {
        "max_payload_bytes": max_bytes,
        "max_pixels": max_pixels,
        "max_records": max_records,
        "max_explained": max_explained,
        "api_key": api_key is not None,
    }
    info, public = {**served.info(), **limits}, {**served.info(statistics=False), **limits}
    shared = Shared()
    api = ClassifierAPI(
        path, max_pixels, top_k, max_explained, max_batch_size=max_batch_size, batch_timeout=batch_timeout
    )
    guard = (RequestGuard, {"limits": Limits(max_bytes, body_timeout, api_key, max_records, public), "shared": shared})
    server = Server(
        api,
        accelerator=accelerator,
        workers_per_device=workers,
        model_metadata=info,
        healthcheck_path="/ready",
        middlewares=[guard],
        shared=shared,
        stop_timeout=stop_timeout,
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


def serve_command(
    ckpt_path: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_batch_size: int = 32,
    batch_timeout: float = 0.005,
    max_payload_mb: float = 4,
    max_pixels: int = 4096 * 4096,
    top_k: int = 5,
    accelerator: Literal["auto", "cpu", "cuda", "mps"] = "auto",
    workers: int = 1,
    api_key: str | None = None,
    header_timeout: float = 10,
    body_timeout: float = 30,
    stop_timeout: float = 5,
    max_records: int = 1000,
    max_explained: int = 100,
) -> None:
    """An HTTP service and web page for a checkpoint or an exported model.

    POST /predict; GET /health, /ready, /info, /metrics. It runs until SIGTERM or Ctrl-C, then finishes the
    requests it took.

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
    args = argparse.Namespace(**locals())
    args.api_key = api_key if api_key is not None else os.environ.get("LIT_NETS_API_KEY")
    if args.api_key is not None and not args.api_key.strip():  # --api_key "$KEY" with KEY unset: never no key
        source = "--api_key" if api_key is not None else "LIT_NETS_API_KEY"
        raise UserError(
            f"serve: {source} is empty (an unset variable?); give the key, or leave it out to serve without one"
        )
    for name, value in (("max_records", max_records), ("max_explained", max_explained)):
        if value < 1:
            raise UserError(f"serve --{name} must be 1 or more, got {value}")
    if not Path(ckpt_path).is_file():  # best, last or a run folder (an exported file is served as it is)
        from lit_nets.deploy.inference import open_checkpoint

        args.ckpt_path = open_checkpoint(ckpt_path).file
    run(args)


def run(args: argparse.Namespace) -> None:
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

    from lit_nets.core import runtime

    runtime.give_back_freed_memory()  # before LitServe forks its processes: they inherit it
    folder = tempfile.TemporaryDirectory(prefix="lit_nets_metrics_")
    metrics.start(folder.name)
    server = make_server(
        args.ckpt_path,
        max_payload_mb=args.max_payload_mb,
        max_pixels=args.max_pixels,
        top_k=args.top_k,
        max_batch_size=args.max_batch_size,
        batch_timeout=args.batch_timeout,
        accelerator=args.accelerator,
        workers=args.workers,
        api_key=args.api_key,
        body_timeout=args.body_timeout,
        stop_timeout=args.stop_timeout,
        max_records=args.max_records,
        max_explained=args.max_explained,
    )
    main_pid, told = os.getpid(), []

    def stop(signum: int, frame: Any) -> None:
        if os.getpid() != main_pid:  # a forked child (LitServe's manager): the main process stops it
            return
        if not told:  # the first one stops the service; more of them change nothing
            told.append(signal.Signals(signum).name)
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    key = " (API key required)" if args.api_key else ""
    print(
        f"serving {args.ckpt_path} on http://{args.host}:{args.port}/{key}  (POST /predict, GET /health, /ready, "
        "/info, /metrics)",
        flush=True,
    )
    try:
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

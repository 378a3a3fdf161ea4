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
import io
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lit_nets.errors import UserError

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
    schema: dict[str, Any] | None
    source: str
    explainer: Any = None  # the Lightning classifier, for Grad-CAM (CNN checkpoints only)

    @property
    def kind(self) -> str:
        return "tabular" if self.schema and "target" in self.schema else "image"  # image schemas: classes, size

    def info(self) -> dict[str, Any]:
        info = {"kind": self.kind, "class_names": self.class_names, "input_shape": self.input_shape}
        info.update(source=self.source, gradcam=self.explainer is not None)
        if self.kind == "tabular":
            info["example"] = example_record(self.schema)
        return info


def load(path: str, device: str = "cpu") -> Served:
    """A checkpoint (``.ckpt``) or an exported TorchScript, pt2 or ONNX file with its JSON sidecar."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"--ckpt_path {path}: no such file")
    if file.suffix == ".ckpt":
        from lit_nets.export import Deployable
        from lit_nets.inference import load_classifier

        model = load_classifier(file, device)
        net = Deployable(model.normalize, model.net).eval()
        explainer = model if hasattr(model.net, "features") else None
        schema = dict(model.schema) if model.schema else None
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
    return Served(net, list(meta["class_names"]), list(meta["input_shape"][1:]), meta.get("schema"), file.name)


def _onnx_runner(file: Path, device: str):
    try:
        import onnxruntime
    except ImportError:
        raise UserError('serving ONNX needs onnxruntime: pip install -e ".[export]"') from None
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda") else None
    session = onnxruntime.InferenceSession(str(file), providers=providers or ["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"x": x.cpu().numpy()})[0])


def example_record(schema: dict[str, Any]) -> dict[str, Any]:
    """A valid request for a tabular model: each numeric feature at its training median, each text one at its
    first category."""
    from lit_nets.data.schema import TabularSchema

    record = {c["name"]: c["fill"] for c in schema["numeric"]}
    record.update({c["name"]: c["categories"][0] for c in schema["categorical"]})
    return {name: record[name] for name in TabularSchema.from_dict(schema).features}


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


def read_image(data: bytes, channels: int, size: tuple[int, int], max_pixels: int) -> torch.Tensor:
    """An uploaded image as uint8 (C, H, W) at the model's size. The header is read first (Pillow reads no
    pixels on open): only PNG and JPEG are decoded, and only when they hold at most ``max_pixels`` pixels."""
    from PIL import Image, UnidentifiedImageError

    from lit_nets.data.folder import BadImage, decode

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
        return decode(data, channels, size, name="the image")
    except BadImage as e:
        raise Rejected(400, str(e)) from None


def read_records(body: Any, schema: dict[str, Any]) -> torch.Tensor:
    """A JSON record (object) or a list of them as model inputs, encoded as in training."""
    import pandas as pd

    from lit_nets.data.schema import TabularSchema

    records = body if isinstance(body, list) else [body]
    if not records or not all(isinstance(r, dict) for r in records):
        raise Rejected(400, "send a JSON object of feature values, or a non-empty list of them")
    bad = [(name, v) for r in records for name, v in r.items() if isinstance(v, (dict, list))]
    if bad:
        raise Rejected(400, f"feature {bad[0][0]!r}: expected a number or a string, got {json.dumps(bad[0][1])}")
    try:
        rows = TabularSchema.from_dict(schema).encode(pd.DataFrame.from_records(records), "request")
    except UserError as e:
        raise Rejected(400, str(e)) from None
    return torch.from_numpy(rows)


# -- the LitServe API ---------------------------------------------------------------------------------------
try:
    import litserve as ls
except ImportError:  # the serve extra is optional: make_server() says how to install it
    ls = None


class ClassifierAPI(ls.LitAPI if ls else object):
    """Decode each request on its own (a bad one becomes an error for that request only), run the valid ones as
    one batch, answer each with label, probability, top-k and all class probabilities."""

    def __init__(self, path: str, max_pixels: int, top_k: int, **batching: Any) -> None:
        super().__init__(**batching)
        self.path, self.max_pixels, self.top_k = path, max_pixels, top_k

    def setup(self, device: str) -> None:
        self.device = device
        self.model = load(self.path, device)

    def decode_request(self, request) -> Item:  # no annotation: LitServe then hands over the parsed form or JSON
        try:
            return self._decode(request)
        except Rejected as e:
            return Item(error=e)
        except Exception as e:  # never let one request's surprise fail the batch it is in
            log.exception("cannot decode a request")
            return Item(error=Rejected(400, f"cannot read the request: {e}"))

    def _decode(self, request: Any) -> Item:
        model = self.model
        is_form = hasattr(request, "getlist")
        if model.kind == "tabular":
            if is_form or not isinstance(request, (dict, list)):
                raise Rejected(400, "this is a tabular model: send JSON feature values, not a form upload")
            return Item(read_records(request, model.schema), many=isinstance(request, list))
        upload = request.get("file") if is_form else None
        if upload is None or not hasattr(upload, "file"):
            raise Rejected(400, "this is an image model: upload a PNG or JPEG as multipart form field 'file'")
        channels, *size = model.input_shape
        image = read_image(upload.file.read(), channels, tuple(size), self.max_pixels)
        wants_cam = str(request.get("explain", "")).lower() in ("1", "true", "yes")
        return Item(image[None], explain=wants_cam)

    def batch(self, inputs: list[Item]) -> list[Item]:
        return list(inputs)  # items hold different numbers of rows: predict() concatenates the valid ones

    def predict(self, x: Item | list[Item]) -> Item | list[Item]:
        items = x if isinstance(x, list) else [x]
        valid = [item for item in items if item.error is None]
        if valid:
            inputs = torch.cat([item.x for item in valid]).to(self.device)
            with torch.inference_mode():
                probs = probabilities(self.model.forward(inputs)).cpu()
            start = 0
            for item in valid:
                answers = [self._answer(p) for p in probs[start : start + len(item.x)]]
                item.result = {"predictions": answers} if item.many else answers[0]
                start += len(item.x)
                if item.explain and self.model.explainer is not None:
                    item.result["gradcam"] = self._gradcam(item.x[0])
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
        top = probs.topk(min(self.top_k, len(names)))
        return {
            "label": names[int(top.indices[0])],
            "probability": round(float(top.values[0]), 6),
            "top_k": [{"label": names[int(i)], "probability": round(float(p), 6)} for p, i in zip(*top, strict=True)],
            "probabilities": {name: round(float(p), 6) for name, p in zip(names, probs, strict=True)},
        }

    def _gradcam(self, image: torch.Tensor) -> str:
        """The Grad-CAM overlay of one image as a PNG data URL, enlarged so a 28-pixel digit can be seen."""
        from PIL import Image
        from torchcam.methods import GradCAM

        from lit_nets.explain import default_layer, explain_one

        model = self.model.explainer
        with torch.enable_grad(), GradCAM(model, default_layer(model), tuple(model.input_shape)) as cam:
            _, overlay = explain_one(model, cam, image)
        scale = max(1, 224 // max(overlay.size))
        overlay = overlay.resize((overlay.width * scale, overlay.height * scale), Image.Resampling.NEAREST)
        buffer = io.BytesIO()
        overlay.save(buffer, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """A probability per class from the served module's logits: one logit is a binary (BCE) model."""
    logits = logits.float()
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - p, p], dim=1)
    return logits.softmax(dim=1)


# -- the HTTP layer in front of the workers -----------------------------------------------------------------
class RequestGuard:
    """ASGI middleware on ``POST /predict``, in the API process before a request is queued: 413 for a body above
    ``max_bytes`` (by its Content-Length, or counted as it streams in), 400 for a content type other than a
    multipart upload or JSON, and for JSON that does not parse. LitServe's own size limit answers 413 only after
    reading the body, and malformed JSON reaches it as a 500, hence this class."""

    def __init__(self, app: Any, *, max_bytes: int, path: str = "/predict") -> None:
        self.app, self.max_bytes, self.path = app, max_bytes, path

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        from starlette.datastructures import Headers
        from starlette.responses import JSONResponse

        headers = Headers(scope=scope)
        too_large = JSONResponse({"detail": f"the request is above the limit of {self.max_bytes:,} bytes"}, 413)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await too_large(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                return await too_large(scope, receive, send)
        body = b"".join(chunks)
        content_type = headers.get("content-type", "")
        problem = None
        if content_type.startswith("application/json"):
            try:
                json.loads(body)
            except ValueError as e:
                problem = f"the body is not valid JSON ({e})"
        elif not content_type.startswith("multipart/form-data"):
            problem = "send an image as a multipart/form-data upload (field 'file') or features as application/json"
        if problem:
            return await JSONResponse({"detail": problem}, 400)(scope, receive, send)

        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def make_server(path: str, *, max_payload_mb: float = 4, max_pixels: int = 4096 * 4096, top_k: int = 5,
                max_batch_size: int = 32, batch_timeout: float = 0.005, accelerator: str = "auto",
                workers: int = 1) -> Any:  # fmt: skip
    """The LitServer for a checkpoint or exported model, with the guard, the page and ``/info`` describing it."""
    if ls is None:
        raise UserError('serving needs LitServe: pip install -e ".[serve]"')
    served = load(path)  # fail here, with a clear message, rather than in a worker process
    max_bytes = int(max_payload_mb * 2**20)
    info = {**served.info(), "max_payload_bytes": max_bytes, "max_pixels": max_pixels}
    api = ClassifierAPI(path, max_pixels, top_k, max_batch_size=max_batch_size, batch_timeout=batch_timeout)
    server = ls.LitServer(api, accelerator=accelerator, workers_per_device=workers, model_metadata=info,
                          middlewares=[(RequestGuard, {"max_bytes": max_bytes})])  # fmt: skip
    # LitServe answers "/" with a plain "litserve running"; the page replaces that route
    server.app.router.routes = [r for r in server.app.router.routes if getattr(r, "path", None) != "/"]
    from fastapi.responses import HTMLResponse

    page = PAGE.read_text()
    server.app.add_api_route("/", lambda: HTMLResponse(page), methods=["GET"], include_in_schema=False)
    return server


def main(argv: list[str]) -> None:
    """``python -m lit_nets serve ...``: parse the arguments and run."""
    parser = argparse.ArgumentParser(prog="python -m lit_nets serve", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--ckpt_path",
        required=True,
        help="checkpoint (.ckpt; or best, last, a run folder) or exported .torchscript.pt/.pt2/.onnx",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max_batch_size", type=int, default=32, help="requests run together (default 32)")
    parser.add_argument("--batch_timeout", type=float, default=0.005, help="seconds to wait to fill a batch")
    parser.add_argument("--max_payload_mb", type=float, default=4, help="larger bodies get 413 (default 4)")
    parser.add_argument("--max_pixels", type=int, default=4096 * 4096, help="larger images get 400 (default 4096²)")
    parser.add_argument("--top_k", type=int, default=5, help="classes in each answer's top_k (default 5)")
    parser.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--workers", type=int, default=1, help="inference processes per device (default 1)")
    args = parser.parse_args(argv)
    if not Path(args.ckpt_path).is_file():  # best, last or a run folder (an exported file is served as it is)
        from lit_nets.checkpoints import resolve_for_tool

        args.ckpt_path = resolve_for_tool(args.ckpt_path)
    server = make_server(
        args.ckpt_path, max_payload_mb=args.max_payload_mb, max_pixels=args.max_pixels, top_k=args.top_k,
        max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout, accelerator=args.accelerator,
        workers=args.workers,
    )  # fmt: skip
    print(f"serving {args.ckpt_path} on http://{args.host}:{args.port}/  (POST /predict, GET /health, GET /info)")
    server.run(host=args.host, port=args.port, generate_client_file=False, log_level="warning")

"""The LitServe API: requests batched across clients, decoded, predicted and answered (top-k, Grad-CAM or column
contributions when asked), and the loop that waits for requests without spinning."""

from __future__ import annotations

import base64
import io
import logging
from typing import Any

import torch

from lit_nets.core.models.deployable import probabilities, top_k
from lit_nets.deploy.serve.metrics import metrics
from lit_nets.deploy.serve.model import load
from lit_nets.deploy.serve.requests import Item, Rejected, read_image, read_records, wants_attributions

try:
    import litserve as ls
except ImportError:  # the serve extra is optional: make_server() says how to install it
    ls = None

log = logging.getLogger(__name__)


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
        from lit_nets.core import runtime, threads

        runtime.give_back_freed_memory()  # this process is spawned: a fresh malloc
        given = threads.given()  # serve's run() set it: the main process's share divided by the workers
        if given is not None:
            threads.apply(given[0])
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
                out = self.model.forward(inputs).float().cpu()
            probs = out if self.model.task.value else probabilities(out)  # a value model: its values
            if self.model.task.labels:  # a sigmoid per label
                probs = torch.sigmoid(out)
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
        if self.model.task.value:  # in the target's units, within the training targets' range
            return {"value": round(float(probs[0]), 6)}
        if self.model.task.labels:  # each label whose probability reaches its threshold
            cuts = self.model.threshold
            names = self.model.class_names
            return {
                "labels": [name for name, p, cut in zip(names, probs.tolist(), cuts, strict=True) if p >= cut],
                "probabilities": {name: round(float(p), 6) for name, p in zip(names, probs, strict=True)},
            }
        names = self.model.class_names
        (top,) = top_k(probs[None], names, self.top_k)
        label = self.model.decide(probs)  # two classes: at the model's decision threshold
        return {
            "label": names[label],
            "probability": round(float(probs[label]), 6),
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

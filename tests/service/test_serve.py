"""The HTTP service: right answers on real digits and CSV rows, under load, and after every kind of bad request."""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import torch
from helpers.cli import in_process
from helpers.service import Service, port_is_free, short_png, stop_cleanly

pytest.importorskip("litserve")


def png(image: torch.Tensor) -> bytes:
    from torchvision.io import encode_png

    return encode_png(image).numpy().tobytes()


@pytest.fixture(scope="module")
def digits(cnn_run) -> tuple[list[bytes], list[str], list[str]]:
    """50 test-split digits (every 20th: all classes) as PNG files, their true labels and the checkpoint's own
    predictions."""
    from lit_nets.data import MNISTDataModule
    from lit_nets.deploy.inference import load_classifier

    work, _ = cnn_run
    x, y = MNISTDataModule(data_dir=str(work / "data"), download=False).splits.test
    x, y = x[::20], y[::20]
    model = load_classifier(work / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt")
    with torch.no_grad():
        predicted = model(x).argmax(1)
    return [png(image) for image in x], [str(int(v)) for v in y], [str(int(v)) for v in predicted]


def post_image(url: str, data: bytes, session: requests.Session | None = None, **fields: str) -> requests.Response:
    return (session or requests).post(f"{url}/predict", files={"file": ("x.png", data)}, data=fields, timeout=60)


def test_real_digits_get_the_checkpoints_labels(cnn_service, digits) -> None:
    url, _ = cnn_service
    images, truth, predicted = digits
    answers = [post_image(url, image).json() for image in images]
    assert [a["label"] for a in answers] == predicted  # the service answers exactly as the checkpoint does
    accuracy = sum(a["label"] == t for a, t in zip(answers, truth, strict=True)) / len(truth)
    assert accuracy >= 0.85, f"accuracy {accuracy:.2f} on 50 real test digits"
    first = answers[0]
    assert 0.0 <= first["probability"] <= 1.0 and first["top_k"][0] == {
        "label": first["label"],
        "probability": first["probability"],
    }
    assert len(first["top_k"]) == 5 and abs(sum(first["probabilities"].values()) - 1) < 1e-3


def test_gradcam_overlay_on_request(cnn_service, digits) -> None:
    from PIL import Image

    url, _ = cnn_service
    answer = post_image(url, digits[0][0], explain="1").json()
    assert answer["gradcam"].startswith("data:image/png;base64,")
    import base64

    overlay = Image.open(io.BytesIO(base64.b64decode(answer["gradcam"].split(",", 1)[1])))
    assert overlay.size == (224, 224) and overlay.mode == "RGB"
    assert "gradcam" not in post_image(url, digits[0][0]).json()  # only when asked: it costs a backward pass


def test_200_requests_from_8_concurrent_clients_all_succeed(cnn_service, digits) -> None:
    url, _ = cnn_service
    images, _, predicted = digits
    local = threading.local()

    def one(i: int) -> tuple[int, str, str]:
        local.session = getattr(local, "session", None) or requests.Session()
        response = post_image(url, images[i % len(images)], local.session)
        return response.status_code, response.json().get("label"), predicted[i % len(images)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(200)))
    assert [status for status, _, _ in results] == [200] * 200
    assert all(label == expected for _, label, expected in results)


JSON = {"Content-Type": "application/json"}


def bomb(width: int, height: int) -> bytes:
    """A grey PNG of zeros, tiny on disk: at 20,000 × 20,000 a real decompression bomb (400 KB, 400 MB decoded)."""
    compressor, parts, row = zlib.compressobj(9), [], b"\0" * (width + 1)
    for _ in range(height):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    data = b"".join(parts)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def gif() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (28, 28)).save(buffer, format="GIF")
    return buffer.getvalue()


BAD_REQUESTS = {
    "oversize": (dict(files={"file": ("big.png", b"\0" * (5 * 2**20))}), 413, "above the limit"),
    "not an image": (dict(files={"file": ("notes.png", b"just some text")}), 400, "not a PNG or JPEG"),
    "GIF (not allowed)": (dict(files={"file": ("x.gif", gif())}), 400, "not a PNG or JPEG"),
    "bomb": ("bomb", 400, "larger than the limit of 16,777,216 pixels"),
    "too many pixels": ("5000x4000", 400, "5000x4000 pixels, above the limit of 16,777,216"),
    "truncated PNG": ("truncated", 400, "not a readable image"),
    # a valid header and too little image data: segfaulted torchvision's decoder, and the service with it
    "68-byte PNG": (dict(files={"file": ("short.png", short_png())}), 400, "not a readable image"),
    "multipart without boundary": (dict(data="x", headers={"Content-Type": "multipart/form-data"}), 400, "no boundary"),
    "JSON nested 100,000 deep": (dict(data="[" * 100_000, headers=JSON), 400, "nests deeper than 32 levels"),
    "no file field": (dict(files={"other": ("x.png", b"1")}), 400, "multipart form field 'file'"),
    "malformed JSON": (dict(data="{bad", headers={"Content-Type": "application/json"}), 400, "not valid JSON"),
    "JSON to an image model": (dict(json={"a": 1}), 400, "upload a PNG or JPEG"),
    "plain text": (dict(data="hello", headers={"Content-Type": "text/plain"}), 400, "multipart/form-data"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_gets_a_json_error_and_the_next_good_one_succeeds(cnn_service, digits, case: str) -> None:
    url, _ = cnn_service
    kwargs, status, message = BAD_REQUESTS[case]
    if kwargs == "truncated":
        kwargs = dict(files={"file": ("cut.png", digits[0][0][: len(digits[0][0]) // 2])})
    elif kwargs == "bomb":
        kwargs = dict(files={"file": ("bomb.png", bomb(20_000, 20_000))})
    elif kwargs == "5000x4000":  # under Pillow's own bomb limit: stopped by the service's --max_pixels
        kwargs = dict(files={"file": ("large.png", bomb(5_000, 4_000))})
    response = requests.post(f"{url}/predict", timeout=60, **kwargs)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"] and ".py" not in response.text  # no source paths
    good = post_image(url, digits[0][1])
    assert good.status_code == 200 and good.json()["label"] == digits[2][1]


def test_bad_requests_do_not_fail_the_good_ones_batched_with_them(cnn_service, digits) -> None:
    """LitServe fails a whole batch when one request raises; here each request is judged alone."""
    url, _ = cnn_service
    images, _, predicted = digits

    def one(i: int) -> tuple[int, str | None]:
        if i % 2:
            return post_image(url, b"not a picture").status_code, None
        response = post_image(url, images[i])
        return response.status_code, response.json()["label"] == predicted[i]

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(one, range(48)))
    assert [r for i, r in enumerate(results) if i % 2] == [(400, None)] * 24
    assert [r for i, r in enumerate(results) if not i % 2] == [(200, True)] * 24


def test_health_info_and_page(cnn_service) -> None:
    url, _ = cnn_service
    assert requests.get(f"{url}/health", timeout=10).text == "ok"
    info = requests.get(f"{url}/info", timeout=10).json()["model"]
    assert info["kind"] == "image" and info["input_shape"] == [1, 28, 28] and info["gradcam"] is True
    assert info["class_names"] == [str(d) for d in range(10)]
    page = requests.get(f"{url}/", timeout=10)
    assert page.headers["content-type"].startswith("text/html") and '<canvas id="canvas"' in page.text


def test_every_exported_model_serves_the_same_answers(cnn_run, digits) -> None:
    """TorchScript, torch.export and ONNX files each served on their own (the three services start together, which
    takes half the time of one after the other on two cores), each stopped as a supervisor does."""
    work, _ = cnn_run
    images, _, predicted = digits
    services = {fmt: Service(work / "exported" / f"last.{fmt}", work) for fmt in ("torchscript.pt", "pt2", "onnx")}
    try:
        for fmt, served in services.items():
            served.wait_ready(180)
            labels = [post_image(served.url, image).json()["label"] for image in images[:20]]
            assert requests.get(f"{served.url}/info", timeout=10).json()["model"]["gradcam"] is False, fmt
            assert labels == predicted[:20], fmt
    finally:
        stop_cleanly(*services.values())


def test_a_state_dict_export_is_refused_with_advice(cnn_run, monkeypatch, capfd) -> None:
    work, _ = cnn_run
    proc = in_process(
        "serve", "--ckpt_path", str(work / "exported" / "last.pt"), cwd=work, monkeypatch=monkeypatch, capfd=capfd
    )
    assert proc.returncode == 2 and "serve the checkpoint, or export to torchscript" in proc.stderr
    # the metrics folder's variable is put back: a process started later from here (an MLflow server, in CI) failed
    # writing its own metrics into the deleted folder
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_tabular_records_as_json(wine_service) -> None:
    import pandas as pd

    url, work = wine_service
    rows = pd.read_csv(work / "data" / "wine.csv")
    info = requests.get(f"{url}/info", timeout=10).json()["model"]
    assert info["kind"] == "tabular" and set(info["example"]) == set(rows.columns) - {"cultivar"}
    records = rows.drop(columns="cultivar").to_dict(orient="records")
    one = requests.post(f"{url}/predict", json=records[0], timeout=30).json()
    assert one["label"] == str(rows["cultivar"][0])
    many = requests.post(f"{url}/predict", json=records, timeout=30).json()["predictions"]
    accuracy = sum(p["label"] == str(t) for p, t in zip(many, rows["cultivar"], strict=True)) / len(rows)
    assert len(many) == len(rows) and accuracy >= 0.9, f"accuracy {accuracy:.3f} on all {len(rows)} rows"


def test_explain_1_answers_each_columns_contribution(wine_service) -> None:
    """``"explain": 1`` in a record: its answer holds every column's contribution (largest first), which add up, with
    the baseline's logit, to the logit of the predicted class; records without it get none."""
    import math

    import pandas as pd

    url, work = wine_service
    assert requests.get(f"{url}/info", timeout=10).json()["model"]["attributions"] is True
    rows = pd.read_csv(work / "data" / "wine.csv").drop(columns="cultivar")
    records = rows.iloc[[0, 60, 130]].to_dict(orient="records")
    answers = requests.post(f"{url}/predict", json=[{**r, "explain": 1} for r in records], timeout=30).json()
    for answer in answers["predictions"]:
        why = answer["explanation"]
        assert why["explained"] == answer["label"] and set(why["contributions"]) == set(rows.columns)
        sizes = [abs(v) for v in why["contributions"].values()]
        assert sizes == sorted(sizes, reverse=True)
        total = why["baseline"] + sum(why["contributions"].values())
        assert math.isclose(total, why["output"], abs_tol=0.02 * max(1.0, abs(why["output"] - why["baseline"])))
    assert {a["label"] for a in answers["predictions"]} == {"class_0", "class_1", "class_2"}
    plain = requests.post(f"{url}/predict", json=records[0], timeout=30).json()
    assert "explanation" not in plain


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"alcohol": 13.2}, "missing feature(s) 'malic_acid', "),
        ("[]", "non-empty list"),
        ("5", "send a JSON object of feature values"),
        ("text", "send JSON feature values"),
    ],
)
def test_bad_tabular_requests_name_the_problem(wine_service, body, message: str) -> None:
    url, _ = wine_service
    if body == "text":
        response = requests.post(f"{url}/predict", files={"file": ("x.csv", b"1,2")}, timeout=30)
    elif isinstance(body, str):
        response = requests.post(f"{url}/predict", data=body, headers=JSON, timeout=30)
    else:
        response = requests.post(f"{url}/predict", json=body, timeout=30)
    assert response.status_code == 400 and message in response.json()["detail"], response.text
    assert "line" not in response.json()["detail"]  # a request, not a file


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Infinity", "Infinity is not a finite number"),
        ("-Infinity", "-Infinity is not a finite number"),
        ("1e309", "Infinity is not a finite number"),  # JSON's parser reads it as infinity
        ("1e39", "1e+39 is not a finite number"),  # above float32: inf in the model
        ("1" * 400, f"{'1' * 400} is not a finite number"),  # an integer beyond any float (was a 500)
        ('"inf"', '"inf" is not a finite number'),
        ("true", "true is not a feature value"),
        ('"lots"', '"lots" is not a number'),
        ("[1, 2]", "[1, 2] is not a feature value"),
        ("{}", "{} is not a feature value"),
    ],
)
def test_a_value_the_model_cannot_use_is_refused_naming_the_feature(wine_service, value: str, message: str) -> None:
    url, _ = wine_service
    record = requests.get(f"{url}/info", timeout=10).json()["model"]["example"]
    body = json.dumps(record).replace(f'"alcohol": {json.dumps(record["alcohol"])}', f'"alcohol": {value}')
    assert f'"alcohol": {value}' in body
    response = requests.post(f"{url}/predict", data=body, headers=JSON, timeout=30)
    detail = response.json()["detail"]
    assert response.status_code == 400 and detail.startswith("feature 'alcohol': ") and message in detail, detail


def test_an_empty_record_in_a_list_is_refused_and_missing_values_are_imputed_alike(wine_service) -> None:
    """``{}`` among good records was predicted from the medians; ``null``, ``NaN`` and the training file's missing
    markers ("", "nan", "?") are all "missing", imputed with the training median: the same answer for each."""
    url, _ = wine_service
    record = requests.get(f"{url}/info", timeout=10).json()["model"]["example"]
    response = requests.post(f"{url}/predict", json=[record, {}], timeout=30)
    assert response.status_code == 400 and response.json()["detail"].startswith("record 2 of 2: missing feature(s)")
    answers = []
    for missing in ("null", "NaN", '""', '"nan"', '"?"', '"NA"'):
        body = json.dumps(record).replace(f'"alcohol": {json.dumps(record["alcohol"])}', f'"alcohol": {missing}')
        response = requests.post(f"{url}/predict", data=body, headers=JSON, timeout=30)
        assert response.status_code == 200, (missing, response.text)
        answers.append(response.json()["probabilities"])
    assert all(a == answers[0] for a in answers)
    as_median = requests.post(f"{url}/predict", json=record, timeout=30).json()["probabilities"]
    assert answers[0] == as_median  # the example record holds the medians


def test_one_request_cannot_hold_the_model_for_long(wine_service) -> None:
    """Records per request and explained records per request are capped (413 / 400 naming the option); a request
    under the caps is answered."""
    url, _ = wine_service
    info = requests.get(f"{url}/info", timeout=10).json()["model"]
    assert (info["max_records"], info["max_explained"]) == (1000, 100)
    record = info["example"]
    many = requests.post(f"{url}/predict", json=[record] * 1001, timeout=30)
    assert many.status_code == 413 and "1,001 records, above the limit of 1,000" in many.json()["detail"]
    assert "--max_records" in many.json()["detail"]
    explained = requests.post(f"{url}/predict", json=[{**record, "explain": 1}] + [record] * 100, timeout=30)
    assert explained.status_code == 400 and "101 records to explain" in explained.json()["detail"]
    assert "--max_explained" in explained.json()["detail"]
    assert requests.post(f"{url}/predict", json=[record] * 1000, timeout=60).status_code == 200
    assert requests.post(f"{url}/predict", json=[{**record, "explain": 1}] * 2, timeout=60).status_code == 200


def test_a_multipart_body_of_many_parts_is_a_400(cnn_service, digits) -> None:
    url, _ = cnn_service
    fields = [("file", ("d.png", digits[0][0]))] + [(f"f{i}", (None, "x")) for i in range(1100)]
    response = requests.post(f"{url}/predict", files=fields, timeout=30)
    assert response.status_code == 400 and "the upload has 1,101 parts" in response.json()["detail"], response.text
    assert post_image(url, digits[0][0]).status_code == 200


@pytest.mark.parametrize("how", ["option", "variable"])
def test_an_empty_api_key_is_refused_at_start(tmp_path: Path, monkeypatch, capfd, how: str) -> None:
    """``--api_key "$KEY"`` with KEY unset must not serve without a key."""
    args = ["serve", "--ckpt_path", "nope.ckpt"] + (["--api_key", ""] if how == "option" else [])
    if how == "variable":
        monkeypatch.setenv("LIT_NETS_API_KEY", " ")
    proc = in_process(*args, cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd)
    name = "--api_key" if how == "option" else "LIT_NETS_API_KEY"
    assert proc.returncode == 2 and f"error: serve: {name} is empty" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_locked_services_info_keeps_the_training_statistics_for_key_holders() -> None:
    """The guard in front of a real (tiny) ASGI app: /info without the key is the public one (no example record,
    whose values are training medians), /docs and /openapi.json need the key, and only X-API-Key or
    ``Authorization: Bearer KEY`` count as the key."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from lit_nets.deploy.serve.guard import Limits, RequestGuard, Shared

    full = {"kind": "tabular", "features": ["a"], "example": {"a": 13.05}}
    app = Starlette(
        routes=[
            Route(p, lambda request: JSONResponse({"model": full}))
            for p in ("/info", "/docs", "/openapi.json", "/redoc")
        ]
    )
    public = {"kind": "tabular", "features": ["a"]}
    guarded = RequestGuard(app, limits=Limits(2**20, 30, "k3y", 1000, public), shared=Shared())
    client = TestClient(guarded)
    assert client.get("/info").json() == {"model": public}
    assert client.get("/info", headers={"X-API-Key": "k3y"}).json() == {"model": full}
    assert client.get("/info", headers={"Authorization": "Bearer k3y"}).json() == {"model": full}
    for path in ("/docs", "/openapi.json", "/redoc"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"Authorization": "Bearer k3y"}).status_code == 200
    for wrong in ("k3y", "Basic k3y", "Token k3y", "Bearer k3y-and-more"):
        assert client.get("/docs", headers={"Authorization": wrong}).status_code == 401, wrong
    open_app = RequestGuard(app, limits=Limits(2**20, 30, None, 1000, public), shared=Shared())
    assert TestClient(open_app).get("/info").json() == {"model": full}  # no key: nothing to hide


def test_serve_a_missing_file_is_one_line(tmp_path: Path, monkeypatch, capfd) -> None:
    proc = in_process("serve", "--ckpt_path", "nope.ckpt", cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd)
    assert (
        proc.returncode == 2 and "nope.ckpt: no such checkpoint file" in proc.stderr and "Traceback" not in proc.stderr
    )


@pytest.mark.parametrize(
    ("sig", "to"),
    [
        (signal.SIGTERM, "pid"),  # kill PID, docker stop, Kubernetes, supervisord
        (signal.SIGINT, "group"),  # Ctrl-C in the terminal: every process of the foreground group
        (signal.SIGTERM, "all"),  # systemd's default: each process of the service's cgroup
    ],
    ids=["SIGTERM-pid", "Ctrl-C", "SIGTERM-every-process"],
)
def test_stopping_under_load_answers_every_request_taken(cnn_run, digits, sig: int, to: str) -> None:
    """8 clients send digits without pause; the service is told to stop. Every request it took gets an HTTP
    answer (200, or 503 once it is stopping: then the client goes elsewhere, as behind a load balancer), a new
    connection is refused once it has gone, and nothing is left of it: no process, the port free, exit 0."""
    work, _ = cnn_run
    images, _, predicted = digits
    service = Service(work / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt", work)
    service.wait_ready()
    answered, lost, stop_now = [], [], threading.Event()

    def client(i: int) -> None:
        with requests.Session() as session:
            while True:
                n = len(answered) % len(images)
                try:
                    response = post_image(service.url, images[n], session)
                except requests.ConnectionError as e:
                    if "refused" not in str(e) or not stop_now.is_set():  # refused: the service had gone already
                        lost.append(repr(e))
                    return
                right = response.status_code != 200 or response.json()["label"] == predicted[n]
                answered.append((response.status_code, right))
                if response.status_code == 503:
                    return

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    while len(answered) < 40:  # under load
        time.sleep(0.01)
    stop_now.set()
    code, took = service.stop(sig, to)
    for t in threads:
        t.join(timeout=30)
    output = service.output()
    statuses = sorted({status for status, _ in answered})
    print(f"{sig!r} to {to}: exit {code} after {took:.1f} s; {len(answered)} answered ({statuses}); lost {lost}")
    assert code == 0 and took < 10, output[-3000:]
    assert not lost, lost
    assert set(statuses) <= {200, 503} and all(right for _, right in answered)
    assert "stopped (" in output and "Traceback" not in output, output[-3000:]
    assert port_is_free(service.port)


def test_a_phone_photo_is_read_upright(cnn_service, digits) -> None:
    """A photo stored sideways with EXIF orientation 6 ("rotate 90° clockwise to show"), as phones write them, is
    classified as the upright image is; the same pixels without the tag are not (the test can tell)."""
    from PIL import Image

    url, _ = cnn_service
    images, _, predicted = digits
    tagged, untagged = [], []
    for data in images[:20]:
        sideways = Image.open(io.BytesIO(data)).transpose(Image.Transpose.ROTATE_90)  # stored turned left
        exif = Image.Exif()
        exif[0x0112] = 6
        for target, extra in ((tagged, {"exif": exif}), (untagged, {})):
            buffer = io.BytesIO()
            sideways.save(buffer, format="PNG", **extra)
            target.append(post_image(url, buffer.getvalue()).json()["label"])
    assert tagged == predicted[:20]
    assert sum(a != b for a, b in zip(untagged, predicted[:20], strict=True)) >= 10, untagged


def test_an_extreme_image_shape_gets_an_answer_without_source_paths(cnn_service, digits) -> None:
    url, _ = cnn_service
    for width, height in ((16_000_000, 1),):  # a 16 MB row: 400 quoting a torchvision source path, before
        response = post_image(url, bomb(width, height))
        assert response.status_code in (200, 400) and ".py" not in response.text, response.text[:500]
    good = post_image(url, digits[0][0])
    assert good.status_code == 200 and good.json()["label"] == digits[2][0]


def test_probes_head_ready_and_metrics(cnn_service, digits) -> None:
    """HEAD as load balancers send it; /health (the process answers) and /ready (the model is loaded); Prometheus
    text on /metrics that counts the requests sent here by status and the model's batches."""
    url, _ = cnn_service
    for path in ("/", "/health", "/ready", "/info", "/metrics"):
        head = requests.head(f"{url}{path}", timeout=10)
        assert head.status_code == 200 and head.content == b"", path

    def count(text: str, status: str) -> float:
        line = next((x for x in text.splitlines() if x.startswith(f'lit_nets_requests_total{{status="{status}"}}')), "")
        return float(line.split()[-1]) if line else 0.0

    before = requests.get(f"{url}/metrics", timeout=10).text
    for _ in range(3):
        post_image(url, digits[0][0])
    post_image(url, b"not a picture")
    after = requests.get(f"{url}/metrics", timeout=10)
    assert after.headers["content-type"].startswith("text/plain")
    assert count(after.text, "200") - count(before, "200") == 3 and count(after.text, "400") - count(before, "400") == 1
    assert "lit_nets_request_seconds_bucket" in after.text and "lit_nets_batch_size_count" in after.text
    assert 'lit_nets_model_info{kind="image",source="last.ckpt",classes="10"} 1.0' in after.text


def test_an_api_key_locks_predictions(locked_server, digits) -> None:
    """With LIT_NETS_API_KEY set: 401 without the key or with a wrong one, 200 with it (header or bearer token);
    the probes stay open."""
    service, _ = locked_server
    url, image = service.url, digits[0][0]
    assert post_image(url, image).status_code == 401
    upload = {"files": {"file": ("d.png", image)}, "timeout": 30}
    wrong = requests.post(f"{url}/predict", headers={"X-API-Key": "guess"}, **upload)
    assert wrong.status_code == 401 and "API key" in wrong.json()["detail"]
    right = requests.post(f"{url}/predict", headers={"X-API-Key": "s3cret-key"}, **upload)
    bearer = requests.post(f"{url}/predict", headers={"Authorization": "Bearer s3cret-key"}, **upload)
    assert right.status_code == bearer.status_code == 200 and right.json()["label"] == digits[2][0]
    not_bearer = requests.post(f"{url}/predict", headers={"Authorization": "s3cret-key"}, **upload)
    assert not_bearer.status_code == 401  # the key without the Bearer scheme is not taken
    assert requests.get(f"{url}/info", timeout=10).json()["model"]["api_key"] is True
    for path in ("/docs", "/openapi.json", "/redoc"):  # the API's description is behind the key too
        assert requests.get(f"{url}{path}", timeout=10).status_code == 401, path
    assert requests.get(f"{url}/openapi.json", headers={"X-API-Key": "s3cret-key"}, timeout=10).status_code == 200
    assert requests.get(f"{url}/ready", timeout=10).status_code == 200


def test_slow_clients_are_cut_off(cnn_server, digits) -> None:
    """A client that sends half its headers, or declares a body it does not send, gets 408 after the documented
    timeouts (here 1 s and 2 s) and its connection is closed; the service answers others meanwhile."""
    import socket

    url = cnn_server.url  # the session's service runs with --header_timeout 1 --body_timeout 2
    port = int(url.rsplit(":", 1)[1])
    answers = []
    for partial in (
        b"POST /predict HTTP/1.1\r\nHost: x\r\n",  # headers never finished
        b'POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"a": ',
    ):
        with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
            conn.sendall(partial)
            started, data = time.monotonic(), b""
            while chunk := conn.recv(4096):  # until the service closes the connection
                data += chunk
            answers.append((data.split(b"\r\n", 1)[0], time.monotonic() - started))
    assert [status for status, _ in answers] == [b"HTTP/1.1 408 Request Timeout"] * 2, answers
    assert 0.9 < answers[0][1] < 10 and 1.9 < answers[1][1] < 10, answers
    assert post_image(url, digits[0][0]).status_code == 200


def test_an_idle_service_uses_no_cpu(cnn_server, digits) -> None:
    """No requests for 15 s: all the service's processes together use under 1% of a core (LitServe's loop, asking
    its queue every millisecond, used about 16%). The first request after the pause is answered as usual."""
    assert post_image(cnn_server.url, digits[0][0]).status_code == 200
    time.sleep(2)  # the first answer's after-work
    cpu_before, _ = cnn_server.usage()
    time.sleep(15)
    cpu_after, _ = cnn_server.usage()
    started = time.perf_counter()
    first = post_image(cnn_server.url, digits[0][1])
    after_pause = time.perf_counter() - started
    started = time.perf_counter()
    post_image(cnn_server.url, digits[0][1])
    print(
        f"idle: {cpu_after - cpu_before:.2f} s of CPU in 15 s; the first request after: {after_pause * 1000:.1f} ms, "
        f"the next: {(time.perf_counter() - started) * 1000:.1f} ms"
    )
    assert (cpu_after - cpu_before) / 15 < 0.01
    assert first.status_code == 200 and first.json()["label"] == digits[2][1]


def test_the_container_recipe_serves_a_checkpoint(locked_server, digits) -> None:
    """No container engine runs on our machines (Docker's client only; see the README), so the image is not built
    here: its entry command runs as the image runs it (the ``locked_server`` fixture, stopped with SIGTERM as
    ``docker stop`` does and checked to exit 0), and so does its health check."""
    import re
    import subprocess
    import sys

    service, recipe = locked_server
    health = json.loads(re.search(r"^\s+CMD (\[.*\])$", recipe, re.M).group(1))
    assert "USER serve" in recipe and "download.pytorch.org/whl/cpu" in recipe
    probe = [sys.executable if a == "python" else a.replace(":8000/", f":{service.port}/") for a in health]
    assert subprocess.run(probe, capture_output=True, timeout=30).returncode == 0
    answer = requests.post(
        f"{service.url}/predict",
        files={"file": ("d.png", digits[0][0])},
        headers={"X-API-Key": "s3cret-key"},
        timeout=30,
    )
    assert answer.json()["label"] == digits[2][0]


def test_our_own_failure_on_a_request_is_a_500_without_its_text(caplog) -> None:
    """An exception of the service's own while it reads a request: 500 for that request only, logged with its
    traceback, and its text (which may quote source paths) not sent to the client."""
    from lit_nets.deploy.serve.api import ClassifierAPI

    api = ClassifierAPI("unused.ckpt", 100, 5, max_batch_size=2, batch_timeout=0.001)

    def broken(request):
        raise RuntimeError("failed in /usr/lib/python3/site-packages/somewhere.py")

    api._decode = broken
    item = api.decode_request({})
    assert item.error.status == 500 and ".py" not in item.error.detail and "log" in item.error.detail
    assert "somewhere.py" in caplog.text  # the log has it

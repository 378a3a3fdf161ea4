"""The HTTP service: right answers on real digits and CSV rows, under load, and after every kind of bad request."""

from __future__ import annotations

import io
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import torch

from conftest import CONFIGS, run_cli, serving

pytest.importorskip("litserve")


def png(image: torch.Tensor) -> bytes:
    from torchvision.io import encode_png

    return encode_png(image).numpy().tobytes()


@pytest.fixture(scope="module")
def digits(cnn_run) -> tuple[list[bytes], list[str], list[str]]:
    """50 test-split digits (every 20th: all classes) as PNG files, their true labels and the checkpoint's own
    predictions."""
    from lit_nets.data import MNISTDataModule
    from lit_nets.inference import load_classifier

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
    assert message in response.json()["detail"]
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


@pytest.mark.parametrize("fmt", ["torchscript.pt", "pt2", "onnx"])
def test_an_exported_model_serves_the_same_answers(cnn_run, digits, fmt: str) -> None:
    work, _ = cnn_run
    images, _, predicted = digits
    with serving(work / "exported" / f"last.{fmt}", work) as url:
        labels = [post_image(url, image).json()["label"] for image in images[:20]]
        assert requests.get(f"{url}/info", timeout=10).json()["model"]["gradcam"] is False
    assert labels == predicted[:20]


def test_a_state_dict_export_is_refused_with_advice(cnn_run) -> None:
    work, _ = cnn_run
    proc = run_cli("serve", "--ckpt_path", str(work / "exported" / "last.pt"), cwd=work, check=False)
    assert proc.returncode == 2 and "serve the checkpoint, or export to torchscript" in proc.stderr


@pytest.fixture(scope="module")
def wine_service(tmp_path_factory):
    work = tmp_path_factory.mktemp("wine")
    run_cli("fit", "--config", str(CONFIGS / "mlp.yaml"), "--trainer.max_epochs", "10", "--test_after_fit", "false",
            "--trainer.enable_progress_bar", "false", "--figures.enabled", "false", cwd=work)  # fmt: skip
    with serving(work / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt", work) as url:
        yield url, work


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


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"alcohol": 13.2}, "missing feature column(s)"),
        ("[]", "non-empty list"),
        ({"alcohol": [1, 2]}, "expected a number or a string"),
        ("text", "send JSON feature values"),
    ],
)
def test_bad_tabular_requests_name_the_problem(wine_service, body, message: str) -> None:
    url, _ = wine_service
    if body == "text":
        response = requests.post(f"{url}/predict", files={"file": ("x.csv", b"1,2")}, timeout=30)
    elif isinstance(body, str):
        response = requests.post(f"{url}/predict", data=body, headers={"Content-Type": "application/json"}, timeout=30)
    else:
        response = requests.post(f"{url}/predict", json=body, timeout=30)
    assert response.status_code == 400 and message in response.json()["detail"], response.text


def test_not_a_number_names_the_column(wine_service) -> None:
    url, _ = wine_service
    record = requests.get(f"{url}/info", timeout=10).json()["model"]["example"]
    record["alcohol"] = "lots"
    response = requests.post(f"{url}/predict", json=record, timeout=30)
    assert response.status_code == 400 and "alcohol" in response.json()["detail"], response.text


def test_serve_a_missing_file_is_one_line(tmp_path: Path) -> None:
    proc = run_cli("serve", "--ckpt_path", "nope.ckpt", cwd=tmp_path, check=False)
    assert (
        proc.returncode == 2 and "nope.ckpt: no such checkpoint file" in proc.stderr and "Traceback" not in proc.stderr
    )

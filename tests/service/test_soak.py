"""Soak: 2,000 mixed good and bad requests from 8 clients against each kind of service (slow: about 3 minutes).
Every good request is answered correctly, every bad one with its 4xx, and the service's memory after the run is
within 10% of before. Run with ``pytest -m slow tests/service/test_soak.py -s`` to see the figures."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from helpers.cli import CONFIGS, run_cli
from helpers.service import Service, short_png
from test_serve import JSON, bomb, digits, gif, post_image  # noqa: F401 (digits: a fixture)

pytest.importorskip("litserve")
pytestmark = pytest.mark.slow


def slow_client(url: str) -> int:
    """Half a request head, never finished: cut with 408 after --header_timeout."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        data = b""
        while chunk := conn.recv(4096):
            data += chunk
    return int(data.split(b" ", 2)[1])


def soak(service: Service, kinds: dict, requests_in_all: int = 2000) -> dict:
    """Send ``requests_in_all`` requests drawn in turn from ``kinds`` (name: (send(session) -> response status and
    whether the answer is right, expected status)) from 8 clients; return the figures."""
    names = list(kinds)
    local = threading.local()

    def one(i: int) -> tuple[str, int, bool]:
        local.session = getattr(local, "session", None) or requests.Session()
        name = names[i % len(names)]
        send, expected = kinds[name]
        status, right = send(local.session)
        return name, status, status == expected and right

    with ThreadPoolExecutor(max_workers=8) as pool:  # warm-up: every kind once per client
        list(pool.map(one, range(8 * len(names))))
    time.sleep(1)
    _, memory_before = service.usage()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(requests_in_all)))
    took = time.monotonic() - started
    time.sleep(2)
    _, memory_after = service.usage()
    by_kind = Counter((name, status) for name, status, _ in results)
    wrong = [(name, status) for name, status, ok in results if not ok]
    figures = {
        "requests": len(results),
        "seconds": round(took, 1),
        "by kind and status": dict(sorted(by_kind.items())),
        "wrong": wrong[:10],
        "memory MB before": round(memory_before / 2**20),
        "memory MB after": round(memory_after / 2**20),
    }
    print(json.dumps({k: (str(v) if k == "by kind and status" else v) for k, v in figures.items()}, indent=1))
    assert not wrong, wrong[:10]
    assert memory_after <= 1.10 * memory_before, figures
    return figures


def test_soak_image_service(cnn_run, digits) -> None:  # noqa: F811 (the fixture imported above)
    import numpy as np
    from PIL import Image

    work, _ = cnn_run
    images, _, predicted = digits
    service = Service(
        work / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt", work, "--header_timeout", "2"
    )
    url = f"{service.url}/predict"

    def upload(name: str, data: bytes):
        return lambda s: (s.post(url, files={"file": (name, data)}, timeout=60).status_code, True)

    def body(data: str | bytes, headers: dict):
        return lambda s: (s.post(url, data=data, headers=headers, timeout=60).status_code, True)

    def good(s):
        i = int(time.monotonic_ns()) % len(images)
        response = post_image(service.url, images[i], s)
        return response.status_code, response.status_code == 200 and response.json()["label"] == predicted[i]

    large = io.BytesIO()  # 3.8 MB of noise, under the 4 MB limit: the memory a service keeps after such uploads
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (1990, 2000), dtype=np.uint8)).save(large, "PNG")
    kinds = {
        "good": (good, 200),
        "good 2": (good, 200),
        "good 3": (good, 200),
        "3.8 MB photo": (upload("large.png", large.getvalue()), 200),
        "oversize": (upload("big.png", b"\0" * (5 * 2**20)), 413),
        "not an image": (upload("notes.png", b"just some text"), 400),
        "GIF": (upload("x.gif", gif()), 400),
        "truncated PNG": (upload("cut.png", images[0][: len(images[0]) // 2]), 400),
        "68-byte PNG": (upload("short.png", short_png()), 400),
        "bomb": (upload("bomb.png", bomb(20_000, 20_000)), 400),
        "no file field": (lambda s: (s.post(url, files={"other": ("x", b"1")}, timeout=60).status_code, True), 400),
        "malformed JSON": (body("{bad", JSON), 400),
        "deep JSON": (body("[" * 100_000, JSON), 400),
        "JSON to an image model": (body('{"a": 1}', JSON), 400),
        "plain text": (body("hello", {"Content-Type": "text/plain"}), 400),
        "no boundary": (body("x", {"Content-Type": "multipart/form-data"}), 400),
        "slow client": (lambda s: (slow_client(service.url), True), 408),
    }
    try:
        service.wait_ready()
        soak(service, kinds)
    finally:
        code, _ = service.stop()
    assert code == 0


def test_soak_tabular_service(tmp_path: Path) -> None:
    import pandas as pd

    run_cli(
        "fit",
        "--config",
        str(CONFIGS / "mlp.yaml"),
        "--trainer.max_epochs",
        "10",
        "--test_after_fit",
        "false",
        "--trainer.enable_progress_bar",
        "false",
        "--figures.enabled",
        "false",
        cwd=tmp_path,
    )
    rows = pd.read_csv(tmp_path / "data" / "wine.csv")
    records = rows.drop(columns="cultivar").to_dict(orient="records")
    service = Service(tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt", tmp_path)
    url = f"{service.url}/predict"
    reference: dict[int, str] = {}

    def good(s):
        i = int(time.monotonic_ns()) % len(records)
        response = s.post(url, json=records[i], timeout=60)
        label = response.json().get("label")
        return response.status_code, reference.setdefault(i, label) == label  # the same answer every time

    def with_alcohol(value: str):
        text = json.dumps(records[0]).replace(f'"alcohol": {json.dumps(records[0]["alcohol"])}', f'"alcohol": {value}')
        return lambda s: (s.post(url, data=text, headers=JSON, timeout=60).status_code, True)

    def raw(text: str):
        return lambda s: (s.post(url, data=text, headers=JSON, timeout=60).status_code, True)

    kinds = {
        "good": (good, 200),
        "good 2": (good, 200),
        "a list": (lambda s: (s.post(url, json=records[:20], timeout=60).status_code, True), 200),
        "null": (with_alcohol("null"), 200),
        "Infinity": (with_alcohol("Infinity"), 400),
        "-Infinity": (with_alcohol("-Infinity"), 400),
        "1e309": (with_alcohol("1e309"), 400),
        "1e39": (with_alcohol("1e39"), 400),
        '"inf"': (with_alcohol('"inf"'), 400),
        "true": (with_alcohol("true"), 400),
        "text": (with_alcohol('"lots"'), 400),
        "[good, {}]": (lambda s: (s.post(url, json=[records[0], {}], timeout=60).status_code, True), 400),
        "5": (raw("5"), 400),
        "[]": (raw("[]"), 400),
        "deep JSON": (raw("[" * 100_000), 400),
        "form upload": (lambda s: (s.post(url, files={"file": ("x.csv", b"1,2")}, timeout=60).status_code, True), 400),
    }
    try:
        service.wait_ready()
        soak(service, kinds)
    finally:
        code, _ = service.stop()
    assert code == 0

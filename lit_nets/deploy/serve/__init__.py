"""Serve a classifier over HTTP with LitServe: ``POST /predict``, ``GET /health``, ``GET /info``, a page at ``/``.

    python -m lit_nets serve --ckpt_path best.ckpt --port 8000     # or an exported .torchscript.pt, .pt2 or .onnx
    curl -F file=@digit.png localhost:8000/predict                 # image models: PNG or JPEG upload
    curl -H 'Content-Type: application/json' -d '{"alcohol": 13.2, ...}' localhost:8000/predict   # tabular models

Requests are batched across clients (``--max_batch_size``, ``--batch_timeout``). Hardened for the open network:
bodies above ``--max_payload_mb`` get 413 before they are read, images are decoded only when their header says PNG
or JPEG and at most ``--max_pixels`` pixels (no decompression bombs), and anything else that is wrong gets 400 with
a JSON ``detail`` naming the problem. One bad request never fails the good requests batched with it.
"""

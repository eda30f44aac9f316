# Atelier on a CUDA runtime (the drafting engine uses the GPU; the rest runs without one).
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    ATELIER_DATA_DIR=/data \
    HF_HOME=/data/hf-cache

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv make curl \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 atelier \
 && mkdir -p /app /data && chown atelier:atelier /app /data
WORKDIR /app
COPY --chown=atelier:atelier . /app
USER atelier

# The README's `make run`, minus the start: installs into /app/.venv.
RUN make .venv/.installed

VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1

# Listening beyond loopback: `atelier serve` refuses to start unless ATELIER_TOKEN is set.
CMD [".venv/bin/atelier", "serve", "--host", "0.0.0.0", "--port", "8000"]

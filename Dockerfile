# SceneKV service image. CPU by default; for CUDA build with --build-arg TORCH_SPEC="torch==2.13.0" from a
# CUDA wheel index of your choice (pass PIP_EXTRA_INDEX_URL) and run with a GPU reservation.
FROM python:3.11-slim
ARG TORCH_SPEC="torch==2.13.0"
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg && rm -rf /var/lib/apt/lists/*
WORKDIR /app
RUN pip install --no-cache-dir "${TORCH_SPEC}"
# Ray pinned: docker-compose.yml's Ray head and worker run this image too, and a driver must match its cluster.
RUN pip install --no-cache-dir "ray==2.60.0"
COPY pyproject.toml README.md ./
COPY scenekv scenekv
COPY ingest ingest
COPY vlm vlm
COPY memory memory
COPY qa qa
COPY workers workers
COPY web web
COPY world world
RUN pip install --no-cache-dir .
ENV HF_HOME=/cache/huggingface
ENTRYPOINT ["scenekv"]

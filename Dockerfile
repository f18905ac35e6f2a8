# One image for every Trident service: docker-compose.yml runs it as the trainer, the finance worker, the three
# dashboards and the recommender batch job, each with its own `trident ...` command.
#
#   docker build -t trident .                                                   # CPU (the default)
#   docker build -t trident:gpu --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .   # CUDA torch
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, from PyTorch's own index: the CPU build keeps the image small (PyPI's Linux wheel pulls CUDA).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --index-url "${TORCH_INDEX}" torch==2.13.0

WORKDIR /app
COPY pyproject.toml README.md ./
COPY core core
COPY apps apps
COPY samples samples
# Editable, so that the repository root is /app: the settings find samples/, artifacts/ and var/ under it, and
# TRIDENT_DATA_DIR defaults to /shared/datasets (where docker-compose.yml mounts the data sets).
ARG EXTRAS=pretrained
RUN pip install -e ".[${EXTRAS}]"

RUN useradd --create-home --uid 10001 trident \
    && mkdir -p /app/artifacts /app/var /shared/datasets \
    && chown trident:trident /app/artifacts /app/var
USER trident
# Named volumes start as copies of these (empty, owned by trident), so the services can write to them.
VOLUME ["/app/artifacts", "/app/var"]

EXPOSE 8501 8502 8503
CMD ["trident", "--help"]

# One image for web, CPU workers and GPU workers (docker-compose.yml picks the command).
FROM python:3.11-slim
ARG EXTRAS=train
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 R1_DATA_DIR=/data
WORKDIR /app
# bubblewrap and libseccomp's Python binding: the sandbox for model-written code (workers/rewards/sandbox.py).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends bubblewrap python3-seccomp \
 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml constraints.txt README.md ./
COPY r1studio r1studio
COPY apps apps
COPY workers workers
RUN pip install --no-cache-dir "torch==2.13.0" \
 && pip install --no-cache-dir -e ".[${EXTRAS}]" -c constraints.txt
COPY . .
RUN R1_DATA_DIR=/tmp/build python manage.py collectstatic --noinput -v0
EXPOSE 8000
CMD ["gunicorn", "r1studio.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--threads", "4"]

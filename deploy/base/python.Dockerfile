# Python 3.11 from Debian's package, in a venv on PATH (like the official python image).
ARG DEBIAN_IMAGE=lookalike-base/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/python
# pip uses this bundle, which holds the CA certificates the base image was given.
ENV PATH=/opt/python/bin:$PATH \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
CMD ["python"]

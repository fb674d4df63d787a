# The shadowlab image: one image, one container per role (`shadowlab run ROLE`, later issues).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    SHADOWLAB_DATA_DIR=/var/lib/shadowlab

WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY producers ./producers
COPY processors ./processors
COPY sinks ./sinks
COPY shadowlab ./shadowlab
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /var/lib/shadowlab --create-home shadowlab

USER shadowlab
VOLUME ["/var/lib/shadowlab"]
ENTRYPOINT ["shadowlab"]
CMD ["--help"]

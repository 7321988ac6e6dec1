# syntax=docker/dockerfile:1
#
# One image for every role:
#   digest serve        the default: the web app (port 8000) and the scheduler (fetch, send)
#   digest worker       plan, rank and send from the shared outbox (any number, on PostgreSQL)
#   digest web          the subscriber web app alone
#   digest <command>    one-off commands: docker compose run --rm app digest status
#
# docker build -t trending-digest .
# docker build --build-arg EXTRAS=postgres -t trending-digest .   (keywords only: ~1 GB smaller)
#
# Settings come from DIGEST_* environment variables (see config/digest.example.toml) or a
# TOML file mounted at /app/config/digest.toml. Keep /app/var on a volume shared by every
# container of one installation: it holds the link-signing key when web.secret_key is unset.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: a virtual environment holding the project and its dependencies -------------
FROM ${PYTHON_IMAGE} AS build
# semantic: the sentence-embedding model blended into the ranking (docs/ranking.md).
ARG EXTRAS=postgres,semantic
# torch comes first from PyTorch's CPU-only index: from PyPI it is a multi-GB CUDA build.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_REQUIREMENT="torch>=2.4,<3"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/digest \
    && case ",${EXTRAS}," in *,semantic,*) \
         /opt/digest/bin/pip install --index-url "${TORCH_INDEX}" \
           --extra-index-url https://pypi.org/simple "${TORCH_REQUIREMENT}" ;; esac
WORKDIR /src
# The dependencies first, resolved within pyproject.toml's ranges, in a layer of their own:
# a change to the code does not reinstall them. A stub package stands in for the code here;
# it and setuptools' build/ and egg-info leftovers are removed in the same step, or the real
# install below would reuse them and ship the stub (no __version__). An empty README stands
# in too, so that editing the real one does not reinstall every dependency.
COPY pyproject.toml ./
RUN mkdir digest && touch digest/__init__.py README.md \
    && /opt/digest/bin/pip install ".[${EXTRAS}]" \
    && /opt/digest/bin/pip uninstall --yes trending-digest \
    && rm -rf digest build ./*.egg-info README.md
COPY README.md ./
COPY digest ./digest
RUN /opt/digest/bin/pip install --no-deps . \
    && rm -rf build ./*.egg-info \
    && /opt/digest/bin/digest --version

# -- run: the slim base, the environment, the templates; no compiler, no pip cache ------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="trending-digest" \
      org.opencontainers.image.description="A self-hosted daily email of new research papers, ranked for each subscriber" \
      org.opencontainers.image.licenses="MIT"
ENV PATH=/opt/digest/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DIGEST_PATHS__VAR_DIR=/app/var \
    DIGEST_PATHS__OUTBOX_DIR=/app/var/outbox \
    DIGEST_PATHS__TEMPLATES_DIR=/app/templates \
    DIGEST_WEB__HOST=0.0.0.0 \
    DIGEST_WEB__PORT=8000
RUN groupadd --system --gid 10001 digest \
    && useradd --system --uid 10001 --gid digest --home-dir /app --shell /usr/sbin/nologin digest
COPY --from=build /opt/digest /opt/digest
WORKDIR /app
COPY templates ./templates
COPY config/digest.example.toml ./config/digest.example.toml
RUN mkdir -p /app/var/outbox && chown -R 10001:10001 /app/var
USER 10001:10001
EXPOSE 8000
# The web roles (serve, web) answer /healthz: 200 when the database is usable. A worker has
# no web server: docker-compose.yml gives it `digest db status` as its check instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('DIGEST_WEB__PORT', '8000'); sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status != 200)"]
CMD ["digest", "serve"]

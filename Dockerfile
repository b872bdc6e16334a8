# asgi-start container images: an ASGI app served by Gunicorn+Uvicorn workers,
# Uvicorn, Hypercorn or Granian, chosen at run time by start.py (see the README).
#
#   docker build --target base      -t asgi-start:3.14-slim .
#   docker build --target fastapi   -t asgi-start:3.14-slim-fastapi .
#   docker build --target starlette --build-arg VARIANT=alpine -t asgi-start:3.14-alpine-starlette .
#
# Build arguments:
#   PYTHON_VERSION  3.11 ... 3.14 (default: the newest stable CPython)
#   VARIANT         slim (Debian) or alpine (musl)
#   BASE_IMAGE      the base image itself; default python:${PYTHON_VERSION}-${VARIANT}.
#                   Any image with `python3` (3.11+, with venv and ensurepip) on PATH works.
#                   The published images pin it by digest (.github/base-images.Dockerfile).
#   DISTROLESS_IMAGE  the distroless target's base (its builder is BASE_IMAGE=debian:trixie-slim)
#
# Targets: base (the four servers), fastapi (base + FastAPI), starlette (base + Starlette),
# distroless (base's servers on a distroless Python: no shell, no pip).
# Granian comes as granian[reload] (watchfiles, for WITH_RELOAD under SERVER=granian);
# Hypercorn as hypercorn[h3,trio]: aioquic (with cryptography) for QUIC_BIND (HTTP/3) and
# trio for WORKER_CLASS=trio, as hypercorn-docker's images had them; uvicorn[standard]
# brings uvloop (WORKER_CLASS=uvloop under Hypercorn too).
# The last stage, `base`, is the default target.
#
# Dependencies come only from the hashed locks in requirements/ (regenerate them
# with requirements/lock.sh), installed in a builder stage into /opt/venv, which
# is the only thing copied into the runtime stages: no compiler, no build tools,
# no pip cache in the final image.

ARG PYTHON_VERSION=3.14
ARG VARIANT=slim
ARG BASE_IMAGE=python:${PYTHON_VERSION}-${VARIANT}
ARG DISTROLESS_IMAGE=gcr.io/distroless/python3-debian13:nonroot


# ---------------------------------------------------------------------------
# builder: a virtual environment in /opt/venv, built where compilers may exist
# ---------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# `python3` as found on PATH: /usr/local/bin/python3 in the official images,
# /usr/bin/python3 in Debian's. The venv remembers it, so the runtime stage must
# have the same interpreter at the same path: the same base image (slim, alpine),
# or for `distroless` a distroless image of the same Debian release, whose
# python3 is Debian's package. A base without Python (debian:trixie-slim, the
# distroless variant's builder) gets Debian's python3-venv here, in the builder only.
# hadolint ignore=DL3008  # Debian's python3 is pinned by the base image's digest; the package follows its release
RUN if ! command -v python3 >/dev/null 2>&1; then \
        apt-get update && apt-get install -y --no-install-recommends python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv

# Wheels only. Alpine (musl) has musllinux wheels of every pinned package; if
# one is ever missing, install.sh adds the compilers (apk) to this stage only
# and builds that package from its hashed sdist. See requirements/install.sh.
COPY requirements/install.sh /tmp/requirements/install.sh

FROM builder AS venv-base
COPY requirements/base.txt /tmp/requirements/base.txt
RUN sh /tmp/requirements/install.sh /tmp/requirements/base.txt

FROM venv-base AS venv-fastapi
COPY requirements/fastapi.txt /tmp/requirements/fastapi.txt
RUN sh /tmp/requirements/install.sh /tmp/requirements/fastapi.txt

FROM venv-base AS venv-starlette
COPY requirements/starlette.txt /tmp/requirements/starlette.txt
RUN sh /tmp/requirements/install.sh /tmp/requirements/starlette.txt

# The distroless variant's venv: the servers, and no pip.
FROM venv-base AS venv-base-without-pip
RUN /opt/venv/bin/python -m pip uninstall -q -y pip


# ---------------------------------------------------------------------------
# runtime: the clean base image, a non-root user, the launcher's environment
# ---------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime
ARG BASE_IMAGE
# org.opencontainers.image.source/revision/created/version are added by CI
# (.github/workflows/images.yml), which knows them.
LABEL org.opencontainers.image.title="asgi-start" \
      org.opencontainers.image.description="ASGI app server image: Gunicorn+Uvicorn workers, Uvicorn, Hypercorn or Granian, configured by environment variables (start.py)" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

# The user the server runs as: app, UID 10001, GID 10001, home /home/app
# (writable, for the odd cache; /app and /opt/venv stay root-owned and read-only to it).
RUN set -eux; \
    if command -v useradd >/dev/null 2>&1; then \
        groupadd --gid 10001 app; \
        useradd --uid 10001 --gid 10001 --no-log-init --create-home --home-dir /home/app \
            --shell /usr/sbin/nologin app; \
    else \
        addgroup -g 10001 -S app; \
        adduser -u 10001 -G app -S -D -h /home/app -s /sbin/nologin app; \
    fi

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app

# Port 80 binds as the non-root user on Docker >= 20.10 (it sets
# net.ipv4.ip_unprivileged_port_start=0 in the container's network namespace).
# Elsewhere (--network host, older engines, some Kubernetes setups) set PORT,
# e.g. PORT=8080.
EXPOSE 80

# No curl needed: start.py connects to its own bound port on localhost and
# requests HEALTHCHECK_PATH (default /); healthy below status 500.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/start.pyc", "--healthcheck"]

# exec form: start.py execs the server, which becomes PID 1 and gets SIGTERM.
# /start.pyc is start.py compiled at build time (below): run by path, CPython
# would compile the whole file on every start. `python /start.py` does the same
# thing; the compiled file runs start.py itself if start.py has changed since.
CMD ["python", "/start.pyc"]

# The launcher, copied verbatim (the modes are set, so that a checkout with a
# strict umask still gives readable files), and compiled: start.py to
# /start.pyc beside it (-b) with a checked source hash (see CMD), the config
# files to their __pycache__, because PYTHONDONTWRITEBYTECODE keeps the server
# (not root, and told not to) from caching them. Needs BuildKit for --chmod
# (the default builder since Docker 23; DOCKER_BUILDKIT=1 before).
COPY --chmod=0755 start.py /
COPY --chmod=0644 gunicorn_conf.py hypercorn_conf.py /
RUN python -m compileall -q -b --invalidation-mode checked-hash /start.py \
    && python -m compileall -q /gunicorn_conf.py /hypercorn_conf.py
USER 10001:10001


# The targets: the runtime plus their virtual environment.
FROM runtime AS fastapi
COPY --from=venv-fastapi /opt/venv /opt/venv

FROM runtime AS starlette
COPY --from=venv-starlette /opt/venv /opt/venv


# ---------------------------------------------------------------------------
# distroless: no shell, no pip, no package manager; Debian's own python3.
# Built with BASE_IMAGE=debian:trixie-slim (the builder, above) and
# DISTROLESS_IMAGE=gcr.io/distroless/python3-debian13:nonroot (trixie's Python 3.13):
#
#   docker build --target distroless --build-arg BASE_IMAGE=debian:trixie-slim -t asgi-start:3.13-distroless-trixie .
# ---------------------------------------------------------------------------
FROM ${DISTROLESS_IMAGE} AS distroless
ARG DISTROLESS_IMAGE
LABEL org.opencontainers.image.title="asgi-start" \
      org.opencontainers.image.description="ASGI app server image without a shell: Gunicorn+Uvicorn workers, Uvicorn, Hypercorn or Granian, configured by environment variables (start.py)" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${DISTROLESS_IMAGE}"
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
EXPOSE 80
# exec form only: there is no shell to run anything else
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "/start.pyc", "--healthcheck"]
CMD ["python3", "/start.pyc"]
COPY --chmod=0755 start.py /
COPY --chmod=0644 gunicorn_conf.py hypercorn_conf.py /
COPY --from=venv-base-without-pip /opt/venv /opt/venv
# compiled as in the other images, by the image's own python3, in exec form (no shell)
USER 0:0
RUN ["python3", "-m", "compileall", "-q", "-b", "--invalidation-mode", "checked-hash", "/start.py"]
# hadolint ignore=DL3059  # two commands: exec form has no `&&`, and only start.py goes beside itself (-b)
RUN ["python3", "-m", "compileall", "-q", "/gunicorn_conf.py", "/hypercorn_conf.py"]
USER 10001:10001

# last, so that it is the default target
FROM runtime AS base
COPY --from=venv-base /opt/venv /opt/venv

# start.py alone on Python 3.9 (bullseye stand-in): the servers unpinned, as pip
# resolves them for 3.9, in a venv; no project Dockerfile involved.
# No Granian: its last release for 3.9 (2.5.7; 2.6 needs 3.10) lacks --ssl-protocol-min,
# which start.py passes with TLS, and at times hangs on SIGTERM (a worker never exits).
# TEST_PACKAGES: what the launcher's own tests (tests/unit, tests/e2e) import or run;
# kubernetes-validate pinned as in requirements/dev.txt, since tests/unit/test_manifests.py
# names the Kubernetes versions whose schemas that release ships.
# The repository is mounted at /src when the tests run.
ARG BASE_IMAGE=asgi-start-standin:bullseye
FROM ${BASE_IMAGE}
ARG TEST_PACKAGES="pytest pytest-timeout hypothesis trio vermin kubernetes-validate==1.37.0"
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /venv \
    && /venv/bin/python -m pip install --upgrade pip \
    && /venv/bin/python -m pip install gunicorn uvicorn uvicorn-worker hypercorn ${TEST_PACKAGES} \
    && /venv/bin/python -m pip list
ENV PATH=/venv/bin:$PATH

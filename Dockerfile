# The Mahnwerk image: `mahnwerk api`, `mahnwerk worker`, `mahnwerk migrate` (docker-compose.yml).
FROM python:3.11-slim

# PYTHONPATH: the source tree comes first on sys.path, so PROJECT_ROOT (core/settings.py) is
# /app and the files next to the packages (alembic/, alembic.ini, policies/, templates/) are
# found; a plain `pip install .` copies only the Python packages into site-packages.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app

WORKDIR /app

# Dependencies first: this layer is rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

COPY . .
# Compile the sources once: with PYTHONDONTWRITEBYTECODE the workflow sandbox would otherwise
# recompile workflows/contract.py for every new workflow instance (bench/RESULTS.md: worker CPU
# per checkout 29.2 ms without .pyc files, 14.6 ms with them).
RUN pip install --no-deps . \
    && python -m compileall -q /app \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin mahnwerk \
    && mkdir -p /app/var \
    && chown mahnwerk /app/var

USER mahnwerk
EXPOSE 8000
# Exec form: SIGTERM from `docker stop` reaches mahnwerk itself, which shuts down cleanly.
ENTRYPOINT ["mahnwerk"]
CMD ["--help"]

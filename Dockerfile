# The pipeline's image: the live flow, the dashboard and the migrations (docs/deployment.md).
# The code in /app belongs to root and cannot be written; the processes run as the unprivileged user
# tcp (uid 10001) and write only DATA_DIR=/data (the outage spool, the recovery store, recorded
# sessions, the dashboard role's password when it is not given), which is meant to be a volume.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/data

RUN groupadd --system --gid 10001 tcp \
 && useradd --system --uid 10001 --gid tcp --home-dir /data --no-create-home --shell /usr/sbin/nologin tcp \
 && install -d -o tcp -g tcp -m 0750 /data

WORKDIR /app

# The dependencies alone (the code runs from /app, never from site-packages).
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

COPY market market
COPY connectors connectors
COPY flows flows
COPY sql sql
COPY dashboards dashboards
COPY configs configs
COPY app app
RUN find /app -name __pycache__ -prune -exec rm -rf {} + \
 && python -m compileall -q /app \
 && chown -R root:root /app \
 && chmod -R a-w /app

USER 10001:10001
VOLUME ["/data"]
EXPOSE 5006
CMD ["python", "-m", "bytewax.run", "flows.okx"]

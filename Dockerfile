FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY market market
COPY connectors connectors
COPY flows flows
COPY sql sql
COPY dashboards dashboards
COPY configs configs
RUN pip install --no-cache-dir .
USER nobody

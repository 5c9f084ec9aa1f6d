#!/usr/bin/env bash
# make demo: the operator's main job on the local control plane. Expects `make crds`
# to have run. Leaves the operator running in the background (make demo-down).
# Usage: demo.sh KUBECONFIG LOCAL_DIR
set -euo pipefail
export KUBECONFIG=$(realpath "$1")
local_dir=$2
k() { kubectl "$@"; }

if [ -f "$local_dir/operator.pid" ] && kill -0 "$(cat "$local_dir/operator.pid")" 2>/dev/null; then
  echo ">> operator already running (pid $(cat "$local_dir/operator.pid"))"
else
  echo ">> starting the operator (log: $local_dir/operator.log)"
  nohup .venv/bin/aiincident run --liveness-listen 127.0.0.1:0 >"$local_dir/operator.log" 2>&1 &
  echo $! >"$local_dir/operator.pid"
fi

echo ">> the model workload, its fallback and a policy (examples/demo/)"
k create namespace demo --dry-run=client -o yaml | k apply -f - >/dev/null
k delete aii -n demo --all --wait=true >/dev/null 2>&1 || true
k apply -f examples/demo/00-model.yaml -f examples/demo/10-policy.yaml >/dev/null
for _ in $(seq 1 60); do
  [ "$(k get mp -n demo chat -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ] && break
  sleep 0.5
done
k get deploy,svc -n demo -o wide | sed 's/^/   /'
echo
echo ">> a user reports harmful output (examples/demo/20-incident.yaml)"
k apply -f examples/demo/20-incident.yaml >/dev/null

phase() { k get aii -n demo chat-harmful-output -o jsonpath='{.status.phase}' 2>/dev/null; }
for _ in $(seq 1 60); do
  case "$(phase)" in Mitigated|Failed|AwaitingApproval) break;; esac
  sleep 0.5
done
echo
k get aii -n demo
echo
k get aii -n demo chat-harmful-output -o jsonpath='{range .status.timeline[*]}{.time}  {.type}: {.message}{"\n"}{end}'
echo
echo ">> what changed: the Service now selects the fallback, the model is at 0 replicas"
k get deploy,svc -n demo -o wide | sed 's/^/   /'
echo
echo ">> the fix ships (image v43), then the incident is resolved: everything else is put back"
k set image -n demo deployment/chat-llm llm=registry.example/chat-llm:v43 >/dev/null
k patch aii -n demo chat-harmful-output --type merge \
  -p '{"spec":{"resolution":{"requested":true,"fix":"template restored in v43"}}}' >/dev/null
for _ in $(seq 1 60); do [ "$(phase)" = Resolved ] && break; sleep 0.5; done
k get aii -n demo
k get deploy,svc -n demo -o wide | sed 's/^/   /'
cat <<TXT

The operator keeps running in the background. Try:
  export KUBECONFIG=$KUBECONFIG
  kubectl get aii -A ; kubectl describe aii -n demo chat-harmful-output
Stop it with 'make demo-down'; stop the control plane with 'make cluster-down'.
TXT

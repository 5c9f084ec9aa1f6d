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

echo ">> the model workload, its fallback and a policy"
k create namespace demo --dry-run=client -o yaml | k apply -f - >/dev/null
k apply -f examples/demo/ >/dev/null
echo ">> a user reports harmful output: examples/demo/incident.yaml"

phase() { k get aii -n demo chat-harmful-output -o jsonpath='{.status.phase}' 2>/dev/null; }
for _ in $(seq 1 60); do
  case "$(phase)" in Mitigated|Failed|AwaitingApproval|Detected) break;; esac
  sleep 0.5
done
echo
k get aii -n demo
echo
k get aii -n demo chat-harmful-output -o jsonpath='{range .status.timeline[*]}{.time}  {.type}: {.message}{"\n"}{end}'
cat <<TXT

The operator keeps running in the background. Try:
  export KUBECONFIG=$KUBECONFIG
  kubectl get aii -A ; kubectl describe aii -n demo chat-harmful-output
Stop it with 'make demo-down'; stop the control plane with 'make cluster-down'.
TXT

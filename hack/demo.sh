#!/usr/bin/env bash
# make demo: the operator's main job on the local control plane. Expects `make crds`
# to have run. Leaves the operator running in the background (make demo-down).
# Usage: demo.sh KUBECONFIG LOCAL_DIR
set -euo pipefail
export KUBECONFIG=$(realpath "$1")
local_dir=$2
webhook_port=${DEMO_WEBHOOK_PORT:-18080}
dashboard_port=${DEMO_DASHBOARD_PORT:-3100}
k() { kubectl "$@"; }

if [ -f "$local_dir/operator.pid" ] && kill -0 "$(cat "$local_dir/operator.pid")" 2>/dev/null; then
  echo ">> operator already running (pid $(cat "$local_dir/operator.pid"))"
else
  if ! .venv/bin/python -c "import socket; socket.socket().bind(('127.0.0.1', $webhook_port))" 2>/dev/null; then
    echo "make demo: port $webhook_port is in use by another program; choose another with DEMO_WEBHOOK_PORT=PORT make demo" >&2
    exit 1
  fi
  echo ">> starting the operator (log: $local_dir/operator.log)"
  [ -s "$local_dir/webhook-token" ] || (umask 077; head -c 24 /dev/urandom | base64 >"$local_dir/webhook-token")
  nohup .venv/bin/aiincident run --liveness-listen 127.0.0.1:0 \
    --webhook-listen "127.0.0.1:$webhook_port" --webhook-token-file "$local_dir/webhook-token" \
    >"$local_dir/operator.log" 2>&1 &
  pid=$!
  echo $pid >"$local_dir/operator.pid"
  for _ in $(seq 1 60); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "make demo: the operator (pid $pid) exited; its log ($local_dir/operator.log) ends:" >&2
      tail -5 "$local_dir/operator.log" >&2
      rm -f "$local_dir/operator.pid"
      exit 1
    fi
    curl -fs "http://127.0.0.1:$webhook_port/readyz" >/dev/null && break
    sleep 0.5
  done
fi

# The dashboard, with this kubeconfig (your rights): left running beside the operator.
if [ -f "$local_dir/dashboard.pid" ] && kill -0 "$(cat "$local_dir/dashboard.pid")" 2>/dev/null; then
  echo ">> dashboard already running (pid $(cat "$local_dir/dashboard.pid"))"
elif ! .venv/bin/python -c "import socket; socket.socket().bind(('127.0.0.1', $dashboard_port))" 2>/dev/null; then
  echo "make demo: port $dashboard_port is in use by another program; choose another with DEMO_DASHBOARD_PORT=PORT make demo" >&2
  exit 1
else
  nohup .venv/bin/aiincident dashboard -A --listen "127.0.0.1:$dashboard_port" \
    >"$local_dir/dashboard.log" 2>&1 &
  echo $! >"$local_dir/dashboard.pid"
  for _ in $(seq 1 60); do
    curl -fs "http://127.0.0.1:$dashboard_port/" >/dev/null && break
    sleep 0.5
  done
  echo ">> the dashboard: http://127.0.0.1:$dashboard_port/ (log: $local_dir/dashboard.log)"
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
# Capacity comes back first; traffic returns once the model is ready. The local control
# plane has no kubelet, so its Pods are marked Ready here, as a kubelet would.
for _ in $(seq 1 60); do
  [ "$(phase)" = Resolved ] && break
  .venv/bin/python hack/mark_ready.py demo app=chat-llm >/dev/null 2>&1 || true
  sleep 0.5
done
k get aii -n demo
k get deploy,svc -n demo -o wide | sed 's/^/   /'
echo
echo "== From monitoring: Prometheus -> Alertmanager -> the operator's webhook"
.venv/bin/python hack/demo_pipeline.py demo "http://127.0.0.1:$webhook_port/api/v1/alerts" "$local_dir/webhook-token"
cat <<TXT
The operator keeps running in the background (webhook http://127.0.0.1:$webhook_port).
The dashboard: http://127.0.0.1:$dashboard_port/ (aiincident dashboard -A, with this kubeconfig). Try:
  export KUBECONFIG=$KUBECONFIG
  kubectl get aii -A ; kubectl describe aii -n demo chat-harmful-output
Stop them with 'make demo-down'; stop the control plane with 'make cluster-down'.
TXT

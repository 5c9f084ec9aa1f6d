#!/usr/bin/env bash
# Installs the Debian packages that the control plane build, the tests and the
# demo need. Idempotent: does nothing when every package is already installed.
set -euo pipefail

packages=(
  etcd-server                            # the control plane's store
  golang-go rsync jq                     # building kube-apiserver from Debian's source
  golang-github-modern-go-reflect2-dev   # reflect2 that works with Go 1.19 (see notes)
  dpkg-dev                               # apt-get source
  openssl unzip curl ca-certificates
  prometheus prometheus-alertmanager     # real monitoring for the e2e tests; promtool and
                                         # amtool check deploy/ in the unit tests
  lua5.4                                 # runs the Argo CD health checks (docs/argocd-health*.lua)
  chromium                               # the dashboard's browser tests (Playwright drives it)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "error: missing Debian packages: ${missing[*]}" >&2
  echo "       run 'sudo $0' once, or install them with apt-get." >&2
  exit 1
fi
echo ">> installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

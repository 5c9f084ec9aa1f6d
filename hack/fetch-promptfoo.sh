#!/usr/bin/env bash
# Installs the promptfoo CLI (npm package) once into a cache folder and prints the path
# of its binary. The e2e test of `aiincident export-evals` runs the exported suite with
# it (tests/e2e/test_evals_promptfoo.py finds it there). Pinned for Node 20: later ones
# need Node 22.
#
# Usage: fetch-promptfoo.sh CACHE_DIR VERSION
set -euo pipefail

cache=${1:?usage: fetch-promptfoo.sh CACHE_DIR VERSION}
version=${2:?usage: fetch-promptfoo.sh CACHE_DIR VERSION}
home="$cache/promptfoo-$version"
bin="$home/node_modules/.bin/promptfoo"
if [ -f "$home/.complete" ] && [ -x "$bin" ]; then echo "$bin"; exit 0; fi
command -v npm >/dev/null || { echo "error: npm is needed to install promptfoo (apt-get install npm)" >&2; exit 1; }
echo ">> installing promptfoo@$version into $home" >&2
rm -rf "$home" && mkdir -p "$home"
# No telemetry or update checks from the install's own scripts either.
PROMPTFOO_DISABLE_TELEMETRY=1 PROMPTFOO_DISABLE_UPDATE=1 \
  npm install --prefix "$home" --no-audit --no-fund --loglevel=error "promptfoo@$version" >&2
"$bin" --version >/dev/null
echo "$version" > "$home/.complete"
echo "$bin"

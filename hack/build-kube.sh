#!/usr/bin/env bash
# Builds kube-apiserver and kube-controller-manager from Debian's `kubernetes`
# source package into a cache folder, so that a machine without Docker gets a
# real control plane. Prints the folder that holds etcd, kube-apiserver and
# kube-controller-manager (the layout of controller-runtime's setup-envtest).
#
# Usage: build-kube.sh CACHE_DIR
set -euo pipefail

cache=${1:?usage: build-kube.sh CACHE_DIR}
bin="$cache/bin"
if [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kube-controller-manager" ] && [ -x "$bin/etcd" ]; then
  echo "$bin"; exit 0
fi
mkdir -p "$bin"
ln -sf "$(command -v etcd)" "$bin/etcd"

work="$cache/src"
rm -rf "$work" && mkdir -p "$work" && cd "$work"

# apt-get source needs a deb-src entry mirroring the binary one.
if ! grep -rqs "deb-src" /etc/apt/sources.list.d/ /etc/apt/sources.list; then
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
    > /etc/apt/sources.list.d/debian-src.sources
  apt-get update -qq
fi
echo ">> fetching Debian's kubernetes source package" >&2
apt-get source --download-only kubernetes >/dev/null 2>&1 || {
  apt-get update -qq && apt-get source --download-only kubernetes >/dev/null; }
tar xzf kubernetes_*.orig.tar.gz
tree=$(find . -maxdepth 1 -mindepth 1 -type d | head -n 1)
cd "$tree"

# The vendored reflect2 1.0.1 crashes under Go >= 1.18; Debian ships 1.0.2.
rm -rf vendor/github.com/modern-go/reflect2
mkdir -p vendor/github.com/modern-go/reflect2
cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go \
   /usr/share/gocode/src/github.com/modern-go/reflect2/*.s vendor/github.com/modern-go/reflect2/ 2>/dev/null || \
cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go vendor/github.com/modern-go/reflect2/
find vendor/github.com/modern-go/reflect2 -name '*_test.go' -delete

mkdir -p .go/src/k8s.io && ln -sfn ../../.. .go/src/k8s.io/kubernetes
echo ">> building kube-apiserver and kube-controller-manager (about 5 minutes)" >&2
GOPATH=$PWD/.go CGO_ENABLED=0 HOME="$work/home" GOFLAGS=-mod=vendor GOCACHE="$cache/gocache" \
  make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >"$cache/build.log" 2>&1 || {
    tail -n 40 "$cache/build.log" >&2; echo "error: build failed, log in $cache/build.log" >&2; exit 1; }
cp _output/local/bin/linux/amd64/kube-apiserver _output/local/bin/linux/amd64/kube-controller-manager "$bin/"
cd "$cache" && rm -rf "$work" "$cache/gocache"
echo "$bin"

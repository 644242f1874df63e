#!/bin/sh
# Builds swarmlet/whoami:test from cmd/whoami: a static binary in a FROM scratch image.
# Never pulls (no registry is reachable; scratch needs none). Usage: build.sh [TAG]
set -eu
tag=${1:-swarmlet/whoami:test}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT

(cd "$root" && CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags='-s -w' -o "$ctx/whoami" ./cmd/whoami)
cp "$here/Dockerfile" "$ctx/Dockerfile"
# --pull=false: the base is scratch, and no registry is reachable anyway.
docker build --pull=false -t "$tag" "$ctx"

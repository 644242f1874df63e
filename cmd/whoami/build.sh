#!/bin/sh
# Builds swarmlet/whoami:test from cmd/whoami: a static binary in a FROM scratch image.
# Never pulls (no registry is reachable; scratch needs none). Usage: build.sh [TAG [VERSION]]
# VERSION sets WHOAMI_VERSION in the image, so each tag answers with its version.
set -eu
tag=${1:-swarmlet/whoami:test}
version=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT

(cd "$root" && CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags='-s -w' -o "$ctx/whoami" ./cmd/whoami)
cp "$here/Dockerfile" "$ctx/Dockerfile"
if [ -n "$version" ]; then
	echo "ENV WHOAMI_VERSION=$version" >>"$ctx/Dockerfile"
fi
# --pull=false: the base is scratch, and no registry is reachable anyway.
docker build --pull=false -t "$tag" "$ctx"

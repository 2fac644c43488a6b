#!/usr/bin/env bash
# Release build: static binaries (CGO_ENABLED=0) of powcoord for every
# platform below, with the version and commit stamped into
# `powcoord version`, and their SHA256SUMS, in dist/ (gitignored).
#
#   scripts/release.sh                 # all platforms, version from `git describe`
#   VERSION=v0.2.0 scripts/release.sh  # the version to stamp
#   PLATFORMS="linux/arm64" scripts/release.sh
#
# Output: dist/powcoord-VERSION-OS-ARCH[.exe] and dist/SHA256SUMS (the
# format `sha256sum -c` reads). A checkout with uncommitted changes gets
# the commit suffixed with "-dirty".
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local CGO_ENABLED=0

platforms=${PLATFORMS:-"linux/amd64 linux/arm64 darwin/arm64 windows/amd64"}
commit=$(git rev-parse HEAD)
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
	commit="$commit-dirty"
fi
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo "$commit")}
case "$version" in
*[!A-Za-z0-9._+-]*) echo "release: VERSION $version: only letters, digits and . _ + - are allowed" >&2; exit 2 ;;
esac

rm -rf dist
mkdir -p dist
for p in $platforms; do
	os=${p%/*} arch=${p#*/}
	out="dist/powcoord-$version-$os-$arch"
	[ "$os" = windows ] && out="$out.exe"
	echo "release: building $out" >&2
	GOOS=$os GOARCH=$arch go build -trimpath -buildvcs=false \
		-ldflags "-s -w -X main.stampedVersion=$version -X main.stampedCommit=$commit" \
		-o "$out" ./cmd/powcoord
done
(cd dist && sha256sum powcoord-* > SHA256SUMS)
cat dist/SHA256SUMS

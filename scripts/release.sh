#!/usr/bin/env bash
# Builds the release artifacts into dist/:
#   vault-plugin-secrets-snyk_<version>_<os>_<arch>[.exe]   static, -trimpath
#   SHA256SUMS                                              sha256sum format
#   vault-plugin-secrets-snyk_<version>.cdx.json            CycloneDX SBOM
# Builds are reproducible: no VCS stamping (-buildvcs=false), no build ID, no
# paths (-trimpath), and the build date is the commit's date. Building the same
# commit twice gives the same bytes, so anyone can check a published sum.
#
# Usage: VERSION=… COMMIT=… BUILDDATE=… CYCLONEDX=<path> scripts/release.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${VERSION:?}" "${COMMIT:?}" "${BUILDDATE:?}"
GO=${GO:-go}
DIST=${DIST:-dist}
PLATFORMS=${PLATFORMS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64}
name=vault-plugin-secrets-snyk
ldflags="-s -w -buildid= -X main.version=$VERSION -X main.commit=$COMMIT -X main.buildDate=$BUILDDATE"

rm -rf "$DIST"
mkdir -p "$DIST"
for platform in $PLATFORMS; do
  os=${platform%/*} arch=${platform#*/}
  out="$DIST/${name}_${VERSION}_${os}_${arch}"
  [ "$os" = windows ] && out="$out.exe"
  echo "building $out"
  CGO_ENABLED=0 GOOS=$os GOARCH=$arch GOFLAGS= "$GO" build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$out" ./cmd/$name
done

if [ -n "${CYCLONEDX:-}" ]; then
  echo "writing the SBOM"
  # The SBOM describes the linux/amd64 build (the module graph is the same
  # for every platform here: the plugin has no platform-specific imports).
  # No serial number or timestamp, so that it is reproducible too.
  CGO_ENABLED=0 GOOS=linux GOARCH=amd64 GOFLAGS= "$CYCLONEDX" app -json -std -noserial -notimestamp \
    -main "cmd/$name" -output "$DIST/${name}_${VERSION}.cdx.json" .
fi

(cd "$DIST" && sha256sum -- * > SHA256SUMS)
cat "$DIST/SHA256SUMS"

#!/usr/bin/env bash
# Checks what scripts/release.sh produces: SHA256SUMS verifies, a second build
# of the same commit is byte-identical (so a published sum can be checked by
# rebuilding), every binary is stamped with VERSION, and the binary for this
# machine reports VERSION with -version. Exits non-zero on any mismatch.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${VERSION:?}" "${COMMIT:?}"
GO=${GO:-go}
name=vault-plugin-secrets-snyk
first=$(mktemp -d) second=$(mktemp -d)
trap 'rm -rf "$first" "$second"' EXIT

DIST="$first" ./scripts/release.sh >/dev/null
DIST="$second" ./scripts/release.sh >/dev/null

(cd "$first" && sha256sum --quiet -c SHA256SUMS)
if ! diff "$first/SHA256SUMS" "$second/SHA256SUMS"; then
  echo "FAIL: two builds of one commit differ" >&2
  exit 1
fi

count=0
for bin in "$first/${name}_${VERSION}"_*; do
  case "$bin" in *.cdx.json) continue ;; esac
  # Binaries for other platforms cannot run here: the version string the
  # linker stamped is looked for in the bytes, and the build info must name
  # this module's command.
  if ! grep -aqF -- "$VERSION" "$bin" || ! "$GO" version -m "$bin" | grep -q "path.*github.com/snyk-vault/$name/cmd/$name"; then
    echo "FAIL: $(basename "$bin") is not stamped with $VERSION" >&2
    exit 1
  fi
  count=$((count + 1))
done
[ "$count" -ge 4 ] || { echo "FAIL: $count binaries, want at least 4" >&2; exit 1; }

host="$first/${name}_${VERSION}_$("$GO" env GOOS)_$("$GO" env GOARCH)"
got=$("$host" -version | head -1)
if [ "$got" != "$name $VERSION" ]; then
  echo "FAIL: $(basename "$host") -version says \"$got\", want \"$name $VERSION\"" >&2
  exit 1
fi
"$host" -version | grep -qx "commit: $COMMIT" || { echo "FAIL: -version does not report commit $COMMIT" >&2; exit 1; }

sbom="$first/${name}_${VERSION}.cdx.json"
[ -s "$sbom" ] || { echo "FAIL: no SBOM" >&2; exit 1; }
grep -q '"github.com/hashicorp/vault/sdk"\|pkg:golang/github.com/hashicorp/vault/sdk@v0.25.1' "$sbom" || { echo "FAIL: the SBOM does not list the Vault SDK" >&2; exit 1; }

echo "release check: $count binaries, SHA256SUMS verified, two builds identical, version $VERSION reported"

#!/usr/bin/env bash
# Prints the version the plugin binary reports to Vault (RunningVersion) and
# with -version. Vault requires a semantic version with a leading "v":
#   on a release tag          v1.2.3
#   after a tag               v1.2.3-4-gabc1234      (git describe)
#   no tag yet                v0.0.0-gabc1234
#   uncommitted changes       …-dirty   (untracked files that are not ignored
#                                        count: the build would include them)
#   not a git checkout        v0.0.0-dev
set -euo pipefail
cd "$(dirname "$0")/.."
if ! git rev-parse --git-dir >/dev/null 2>&1; then
  echo v0.0.0-dev
  exit 0
fi
if ! v=$(git describe --tags --match 'v[0-9]*' 2>/dev/null); then
  v="v0.0.0-g$(git rev-parse --short=7 HEAD)"
fi
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then
  v="$v-dirty"
fi
echo "$v"

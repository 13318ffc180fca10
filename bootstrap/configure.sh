#!/usr/bin/env bash
# Register, enable and configure the Snyk secrets engine on a running Vault.
#
#   VAULT_ADDR=… VAULT_TOKEN=… PLUGIN_VERSION=v0.1.0 SNYK_API_TOKEN=… \
#     bootstrap/configure.sh path/to/vault-plugin-secrets-snyk
#
# The plugin binary must be (or is copied, with PLUGIN_DIRECTORY set) in the
# server's plugin_directory under its own name. Environment:
#   PLUGIN_VERSION      required; the version the binary reports (vX.Y.Z)
#   PLUGIN_DIRECTORY    copy the binary there first (a local Vault)
#   MOUNT               mount path (default snyk)
#   SNYK_API_TOKEN | SNYK_CLIENT_ID + SNYK_CLIENT_SECRET   the Snyk credential
#   SNYK_REGION, SNYK_API_URL, SNYK_BROKER_SERVER_URL, SNYK_CA_CERT_FILE
#   SNYK_CONFIG_ARGS    more key=value pairs for snyk/config (e.g. "ttl=30m")
#   BROKER_READERS      "<org>/<scm> …": write a broker-reader policy for each,
#                       named snyk-broker-<org>-<scm>
#   VAULT               the vault CLI (default: vault on PATH)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
binary=${1:?usage: configure.sh path/to/vault-plugin-secrets-snyk}
name=vault-plugin-secrets-snyk
version=${PLUGIN_VERSION:?set PLUGIN_VERSION to the version the binary reports, e.g. v0.1.0}
mount=${MOUNT:-snyk}
vault=${VAULT:-vault}

if [ -n "${PLUGIN_DIRECTORY:-}" ]; then
  install -m 0755 "$binary" "$PLUGIN_DIRECTORY/$name"
fi
sha=$(sha256sum "$binary" | cut -d' ' -f1)

echo "registering $name $version (sha256 $sha)"
"$vault" plugin register -sha256="$sha" -version="$version" secret "$name"

# Ask for the mount itself: no pipe, so no SIGPIPE race with grep -q.
if "$vault" read "sys/mounts/$mount" >/dev/null 2>&1; then
  echo "upgrading $mount/ to $version"
  "$vault" secrets tune -plugin-version="$version" "$mount/"
  "$vault" plugin reload -plugin="$name" >/dev/null
else
  echo "enabling $name at $mount/"
  "$vault" secrets enable -path="$mount" -plugin-version="$version" "$name"
fi

args=()
[ -n "${SNYK_REGION:-}" ] && args+=("region=$SNYK_REGION")
[ -n "${SNYK_API_URL:-}" ] && args+=("api_url=$SNYK_API_URL")
[ -n "${SNYK_BROKER_SERVER_URL:-}" ] && args+=("broker_server_url=$SNYK_BROKER_SERVER_URL")
[ -n "${SNYK_CA_CERT_FILE:-}" ] && args+=("ca_cert=@$SNYK_CA_CERT_FILE")
# shellcheck disable=SC2206
[ -n "${SNYK_CONFIG_ARGS:-}" ] && args+=($SNYK_CONFIG_ARGS)

# Secrets go through stdin, never the command line (visible in ps).
if [ -n "${SNYK_API_TOKEN:-}" ]; then
  printf '%s' "$SNYK_API_TOKEN" | "$vault" write "$mount/config" api_token=- "${args[@]}"
elif [ -n "${SNYK_CLIENT_ID:-}" ] && [ -n "${SNYK_CLIENT_SECRET:-}" ]; then
  printf '%s' "$SNYK_CLIENT_SECRET" | "$vault" write "$mount/config" client_id="$SNYK_CLIENT_ID" client_secret=- "${args[@]}"
else
  echo "set SNYK_API_TOKEN, or SNYK_CLIENT_ID and SNYK_CLIENT_SECRET" >&2
  exit 2
fi

sed "s#snyk/#$mount/#g" "$here/policies/snyk-operator.hcl" | "$vault" policy write snyk-operator -
for reader in ${BROKER_READERS:-}; do
  org=${reader%%/*}
  scm=${reader#*/}
  sed -e "s#__MOUNT__#$mount#g" -e "s#__ORG__#$org#g" -e "s#__SCM__#$scm#g" \
    "$here/policies/broker-reader.hcl.tmpl" | "$vault" policy write "snyk-broker-$org-$scm" -
done
echo "done: vault read $mount/config"

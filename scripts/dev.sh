#!/usr/bin/env bash
# make dev: the simulator plus a real Vault server (file storage, a
# plugin_directory, the plugin registered by sha256 and version), the engine
# enabled at snyk/, configured against the simulator, a demo integration
# created, and a broker secret read. `scripts/dev.sh stop` stops it all.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dev="$root/.dev"
bin="$root/bin"
# VAULT (set by make) points at the Vault to run; bin/vault otherwise.
vault=${VAULT:-$bin/vault}
version=${VERSION:-$("$(dirname "$0")/version.sh")}
plugin=vault-plugin-secrets-snyk

stop() {
  for p in vault sim; do
    if [ -f "$dev/$p.pid" ]; then
      pid=$(cat "$dev/$p.pid")
      if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
      fi
      rm -f "$dev/$p.pid"
    fi
  done
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  local p=$1
  while ! port_free "$p"; do p=$((p + 1)); done
  echo "$p"
}

wait_for() { # wait_for <seconds> <command…>
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then return 1; fi
    sleep 0.2
  done
}

start() {
  stop
  rm -rf "$dev"
  mkdir -p "$dev/plugins" "$dev/vault-data" "$dev/sim"

  # SIM_PROFILE picks how the fake answers the refusals Snyk does not
  # document (snyk-sim -list-profiles), e.g. SIM_PROFILE=status-409-wording-1.
  echo "==> starting the simulator (fake Snyk API and SCMs over TLS, profile ${SIM_PROFILE:-default})"
  "$bin/snyk-sim" -dir "$dev/sim" -profile "${SIM_PROFILE:-default}" >"$dev/sim.log" 2>&1 &
  echo $! >"$dev/sim.pid"
  wait_for 20 test -f "$dev/sim/sim.env" || { cat "$dev/sim.log"; exit 1; }
  # shellcheck disable=SC1091
  . "$dev/sim/sim.env"

  echo "==> starting Vault (file storage, plugin_directory $dev/plugins)"
  cp "$bin/$plugin" "$dev/plugins/$plugin"
  port=$(free_port "${DEV_VAULT_PORT:-8200}")
  cluster_port=$(free_port $((port + 1)))
  cat >"$dev/vault.hcl" <<HCL
storage "file" {
  path = "$dev/vault-data"
}
listener "tcp" {
  address         = "127.0.0.1:$port"
  cluster_address = "127.0.0.1:$cluster_port"
  tls_disable     = true
}
api_addr         = "http://127.0.0.1:$port"
cluster_addr     = "https://127.0.0.1:$cluster_port"
plugin_directory = "$dev/plugins"
disable_mlock    = true
ui               = false
HCL
  "$vault" server -config="$dev/vault.hcl" >"$dev/vault.log" 2>&1 &
  echo $! >"$dev/vault.pid"
  export VAULT_ADDR="http://127.0.0.1:$port"
  unset VAULT_TOKEN VAULT_NAMESPACE
  wait_for 30 curl -s "$VAULT_ADDR/v1/sys/seal-status" || { cat "$dev/vault.log"; exit 1; }

  "$vault" operator init -key-shares=1 -key-threshold=1 >"$dev/init.txt"
  chmod 600 "$dev/init.txt"
  unseal_key=$(awk '/Unseal Key 1:/ {print $4}' "$dev/init.txt")
  root_token=$(awk '/Initial Root Token:/ {print $4}' "$dev/init.txt")
  "$vault" operator unseal "$unseal_key" >/dev/null
  export VAULT_TOKEN="$root_token"
  wait_for 30 "$vault" secrets list

  echo "==> registering $plugin $version by sha256 and enabling it at snyk/"
  sha=$(sha256sum "$dev/plugins/$plugin" | cut -d' ' -f1)
  "$vault" plugin register -sha256="$sha" -version="$version" secret "$plugin"
  "$vault" secrets enable -path=snyk -plugin-version="$version" "$plugin"

  echo "==> configuring snyk/config against the simulator"
  printf '%s' "$SIM_API_TOKEN" | "$vault" write snyk/config api_token=- \
    api_url="$SIM_SNYK_URL" ca_cert=@"$SIM_CA_CERT_FILE" ttl=1h

  echo "==> creating the demo integration snyk/integrations/payments/github"
  printf '%s' "$SIM_GITHUB_TOKEN" | "$vault" write snyk/integrations/payments/github \
    org_id="$SIM_ORGS_PAYMENTS" scm_token=- scm_api_url="$SIM_GITHUB_URL" \
    broker_client_url=http://127.0.0.1:8000

  echo "==> creating the demo Universal Broker deployment snyk/universal/demo (a GitHub and a GitLab connection)"
  # The request carries secrets: written to a private file, not the command line.
  (umask 077 && cat >"$dev/universal-demo.json" <<JSON
{"tenant_id": "$SIM_UNIVERSAL_TENANT_ID", "install_id": "$SIM_UNIVERSAL_INSTALL_ID",
 "install_org_id": "$SIM_UNIVERSAL_INSTALL_ORG_ID", "deployment_id": "$SIM_UNIVERSAL_DEPLOYMENT_ID",
 "client_id": "$SIM_UNIVERSAL_CLIENT_ID", "client_secret": "$SIM_UNIVERSAL_CLIENT_SECRET",
 "credentials": {"MY_GITHUB_TOKEN": {"value": "$SIM_GITHUB_TOKEN", "scm_api_url": "$SIM_GITHUB_URL"},
                 "MY_GITLAB_TOKEN": "$SIM_GITLAB_TOKEN"}}
JSON
  )
  "$vault" write snyk/universal/demo @"$dev/universal-demo.json" >/dev/null
  rm -f "$dev/universal-demo.json"

  cat >"$dev/env.sh" <<ENV
export VAULT_ADDR=$VAULT_ADDR
export VAULT_TOKEN=$root_token
ENV

  echo
  echo "==> vault read snyk/broker/payments/github"
  "$vault" read snyk/broker/payments/github
  echo
  echo "==> vault read snyk/universal/demo/env"
  "$vault" read snyk/universal/demo/env

  cat <<MSG

The engine is running in a real Vault against the simulator.
  . $dev/env.sh                     # VAULT_ADDR and VAULT_TOKEN for this Vault
  $vault read snyk/integrations/payments/github
  $vault write -f snyk/broker/payments/github/rotate
  $vault read snyk/universal/demo
  $vault write -f snyk/universal/demo/rotate
  $vault write snyk/integrations/payments/gitlab org_id=$SIM_ORGS_PAYMENTS scm_token=$SIM_GITLAB_TOKEN scm_url=$SIM_GITLAB_URL
Logs: $dev/vault.log, $dev/sim.log. Simulator admin API: $SIM_ADMIN_URL/state
Stop everything with: make dev-stop
MSG
}

case "${1:-start}" in
  start) start ;;
  stop) stop; echo "stopped" ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

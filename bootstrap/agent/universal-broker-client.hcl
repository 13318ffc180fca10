# Vault Agent in process-supervisor mode for a Snyk Universal Broker client.
# Agent renders the client's platform credentials from the engine's leased
# environment and starts `broker client` with them; when a rendered value
# changes (the engine switched to the next client secret, or a credential
# value was replaced) it restarts the client, which reads its OAuth
# credentials only at start-up. The old secret keeps working for
# ttl + client_exit_window after a switch, so a restart within that window
# loses nothing.
#
# The credential references (one variable per reference, named by the
# deployment at Snyk) cannot be listed here, and Agent allows no file
# template beside env_template: they are rendered into one variable as
# dotenv lines, which the start command writes to .env in the working
# directory (mode 0600) and removes from the environment before starting the
# client. The client expands a connection's ${NAME} from its environment and
# from .env. A GitHub App key (a credential whose name ends in .pem) is a
# file the client reads by path: mount it another way (Snyk's Helm chart does
# this for keys ending in .pem; see bootstrap/kubernetes/universal-broker-vso.yaml).
#
# Combine with a deployment-specific file for auto_auth and the Vault address:
#   vault agent -config=universal-broker-client.hcl -config=auth.hcl
# Environment read by the templates:
#   SNYK_UNIVERSAL_SECRET   the engine path, e.g. snyk/universal/prod/env
# Everything else the client reads (PORT, BROKER_CLIENT_URL, NODE_EXTRA_CA_CERTS,
# …) is passed through Agent's own environment: start Agent with a clean
# environment, because the Broker turns every variable into config.

template_config {
  # Fail loudly instead of running a client on stale secrets forever.
  exit_on_retry_failure = true
  # The engine's leases drive re-reads; this applies only if they vanish.
  static_secret_render_interval = "5m"
}

env_template "DEPLOYMENT_ID" {
  contents             = "{{ with secret (env \"SNYK_UNIVERSAL_SECRET\") }}{{ .Data.env.DEPLOYMENT_ID }}{{ end }}"
  error_on_missing_key = true
}

env_template "CLIENT_ID" {
  contents             = "{{ with secret (env \"SNYK_UNIVERSAL_SECRET\") }}{{ .Data.env.CLIENT_ID }}{{ end }}"
  error_on_missing_key = true
}

env_template "CLIENT_SECRET" {
  contents             = "{{ with secret (env \"SNYK_UNIVERSAL_SECRET\") }}{{ .Data.env.CLIENT_SECRET }}{{ end }}"
  error_on_missing_key = true
}

env_template "UNIVERSAL_BROKER_ENABLED" {
  contents             = "{{ with secret (env \"SNYK_UNIVERSAL_SECRET\") }}{{ .Data.env.UNIVERSAL_BROKER_ENABLED }}{{ end }}"
  error_on_missing_key = true
}

env_template "UNIVERSAL_BROKER_GA" {
  # The comment keeps this template distinct from UNIVERSAL_BROKER_ENABLED's,
  # whose value is the same: Agent collapses identical env_template contents.
  contents             = "{{/* ga */}}{{ with secret (env \"SNYK_UNIVERSAL_SECRET\") }}{{ .Data.env.UNIVERSAL_BROKER_GA }}{{ end }}"
  error_on_missing_key = true
}

env_template "BROKER_SERVER_URL" {
  contents             = "{{ with secret (env \"SNYK_UNIVERSAL_SECRET\") }}{{ .Data.env.BROKER_SERVER_URL }}{{ end }}"
  error_on_missing_key = true
}

env_template "API_BASE_URL" {
  contents             = "{{ with secret (env \"SNYK_UNIVERSAL_SECRET\") }}{{ .Data.env.API_BASE_URL }}{{ end }}"
  error_on_missing_key = true
}

env_template "SNYK_UNIVERSAL_DOTENV" {
  # Every credential reference, one KEY="value" line each (JSON string
  # quoting, which dotenv reads), .pem files left out.
  contents             = <<-EOT
  {{- with secret (env "SNYK_UNIVERSAL_SECRET") }}
  {{- range $name, $value := .Data.env }}
  {{- if not (or (eq $name "DEPLOYMENT_ID" "CLIENT_ID" "CLIENT_SECRET" "UNIVERSAL_BROKER_ENABLED" "UNIVERSAL_BROKER_GA" "BROKER_SERVER_URL" "API_BASE_URL" "BROKER_CLIENT_URL") ($name | regexMatch "\\.pem$")) }}
  {{ $name }}={{ $value | toJSON }}
  {{- end }}
  {{- end }}
  {{- end }}
  EOT
  error_on_missing_key = true
}

exec {
  command                   = ["/bin/sh", "-c", "umask 077 && printf '%s\\n' \"$SNYK_UNIVERSAL_DOTENV\" > .env && unset SNYK_UNIVERSAL_DOTENV && exec broker client"]
  restart_on_secret_changes = "always"
  restart_stop_signal       = "SIGTERM"
}

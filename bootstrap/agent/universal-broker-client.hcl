# Vault Agent in process-supervisor mode for a Snyk Universal Broker client.
# Agent renders the client's platform credentials from the engine's leased
# environment and starts `broker client` with them; when CLIENT_SECRET
# changes (the engine switched to the next client secret) it restarts the
# client, which reads its OAuth credentials only at start-up. The old secret
# keeps working for ttl + client_exit_window after the switch, so a restart
# within that window loses nothing.
#
# The credential references (one variable per reference, named by the
# deployment at Snyk) are rendered into .env in Agent's working directory,
# which is the client's: the client expands a connection's ${NAME} from its
# environment and from .env, and re-reads .env at every configuration sync.
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

template {
  # Every credential reference, one KEY="value" line each (JSON string
  # quoting, which dotenv reads). A GitHub App key (a name ending in .pem)
  # is a file, not a variable: render it with a template of its own.
  destination          = ".env"
  perms                = "0600"
  error_on_missing_key = true
  contents             = <<-EOT
  {{- with secret (env "SNYK_UNIVERSAL_SECRET") }}
  {{- range $name, $value := .Data.env }}
  {{- if not (or (eq $name "DEPLOYMENT_ID" "CLIENT_ID" "CLIENT_SECRET" "UNIVERSAL_BROKER_ENABLED" "UNIVERSAL_BROKER_GA" "BROKER_SERVER_URL" "API_BASE_URL" "BROKER_CLIENT_URL") ($name | regexMatch "\\.pem$")) }}
  {{ $name }}={{ $value | toJSON }}
  {{- end }}
  {{- end }}
  {{- end }}
  EOT
}

exec {
  command                   = ["broker", "client"]
  restart_on_secret_changes = "always"
  restart_stop_signal       = "SIGTERM"
}

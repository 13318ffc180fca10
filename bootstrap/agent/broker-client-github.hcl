# Vault Agent in process-supervisor mode for a classic Snyk Broker client of
# a GitHub integration. Agent renders each Broker variable from the engine's
# leased bundle and starts `broker client` with them; when a rendered value
# changes (a rotated Broker token) it restarts the client, which reads
# BROKER_TOKEN only at start-up.
#
# Combine with a deployment-specific file for auto_auth and the Vault address:
#   vault agent -config=broker-client-github.hcl -config=auth.hcl
# Environment read by the templates:
#   SNYK_BROKER_SECRET   the engine path, e.g. snyk/broker/payments/github
#   SNYK_BROKER_ROLE     "current" (default): run with broker_token;
#                        "next": run with next_broker_token while one is held,
#                        so that with a "current" client beside it one client
#                        always holds the token Snyk routes by (overlap pattern)
# Everything else the Broker client reads (PORT, ACCEPT, BROKER_CLIENT_URL,
# GITHUB_RAW, …) is passed through Agent's own environment: start Agent with a
# clean environment, because the Broker turns every variable into config.

template_config {
  # Fail loudly instead of running a client on stale secrets forever.
  exit_on_retry_failure = true
  # The engine's leases drive re-reads; this applies only if they vanish.
  static_secret_render_interval = "5m"
}

env_template "BROKER_TOKEN" {
  # next_broker_token is present only during the provision-ahead window;
  # `index` reads it without tripping error_on_missing_key.
  contents             = "{{ with secret (env \"SNYK_BROKER_SECRET\") }}{{ $next := index .Data \"next_broker_token\" }}{{ if and (eq (env \"SNYK_BROKER_ROLE\") \"next\") $next }}{{ $next }}{{ else }}{{ .Data.broker_token }}{{ end }}{{ end }}"
  error_on_missing_key = true
}

env_template "GITHUB_TOKEN" {
  contents             = "{{ with secret (env \"SNYK_BROKER_SECRET\") }}{{ .Data.scm_token }}{{ end }}"
  error_on_missing_key = true
}

env_template "BROKER_SERVER_URL" {
  contents             = "{{ with secret (env \"SNYK_BROKER_SECRET\") }}{{ .Data.env.BROKER_SERVER_URL }}{{ end }}"
  error_on_missing_key = true
}

env_template "GITHUB" {
  contents             = "{{ with secret (env \"SNYK_BROKER_SECRET\") }}{{ .Data.env.GITHUB }}{{ end }}"
  error_on_missing_key = true
}

env_template "GITHUB_API" {
  contents             = "{{ with secret (env \"SNYK_BROKER_SECRET\") }}{{ .Data.env.GITHUB_API }}{{ end }}"
  error_on_missing_key = true
}

env_template "GITHUB_GRAPHQL" {
  # The comment keeps this template distinct from GITHUB_API's, whose value
  # is the same on github.com: Agent collapses identical env_template contents.
  contents             = "{{/* graphql */}}{{ with secret (env \"SNYK_BROKER_SECRET\") }}{{ .Data.env.GITHUB_GRAPHQL }}{{ end }}"
  error_on_missing_key = true
}

exec {
  command                   = ["broker", "client"]
  restart_on_secret_changes = "always"
  restart_stop_signal       = "SIGTERM"
}

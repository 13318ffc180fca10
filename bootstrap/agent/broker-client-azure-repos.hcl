# Vault Agent in process-supervisor mode for a classic Snyk Broker client of
# a Azure Repos integration: the same as broker-client-github.hcl (read its
# header for how to run it, SNYK_BROKER_SECRET and SNYK_BROKER_ROLE), with
# this SCM's variables from the engine's env map.

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

env_template "AZURE_REPOS_TOKEN" {
  contents             = "{{ with secret (env \"SNYK_BROKER_SECRET\") }}{{ .Data.env.AZURE_REPOS_TOKEN }}{{ end }}"
  error_on_missing_key = true
}

env_template "BROKER_SERVER_URL" {
  contents             = "{{ with secret (env \"SNYK_BROKER_SECRET\") }}{{ .Data.env.BROKER_SERVER_URL }}{{ end }}"
  error_on_missing_key = true
}

env_template "AZURE_REPOS_ORG" {
  contents             = "{{ with secret (env \"SNYK_BROKER_SECRET\") }}{{ .Data.env.AZURE_REPOS_ORG }}{{ end }}"
  error_on_missing_key = true
}

env_template "AZURE_REPOS_HOST" {
  contents             = "{{ with secret (env \"SNYK_BROKER_SECRET\") }}{{ .Data.env.AZURE_REPOS_HOST }}{{ end }}"
  error_on_missing_key = true
}

exec {
  command                   = ["broker", "client"]
  restart_on_secret_changes = "always"
  restart_stop_signal       = "SIGTERM"
}

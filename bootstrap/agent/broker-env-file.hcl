# Vault Agent template that renders the Broker client's environment file from
# the engine's `env` map, for any SCM (the map carries the right variables).
# The Broker client reads `.env` in its working directory at start-up, so
# whatever starts it must restart it when this file changes (see
# broker-client-github.hcl for Agent's process supervisor, or the Kubernetes
# examples for a command hook).
#
#   cd /broker && vault agent -config=broker-env-file.hcl -config=auth.hcl
# with SNYK_BROKER_SECRET=snyk/broker/<org>/<scm>; the file is written to .env
# in Agent's working directory, where the Broker client looks for it.

template_config {
  exit_on_retry_failure = true
}

# Values are quoted for dotenv: single quotes keep '#' and spaces literal; a
# value that itself holds a single quote is double-quoted instead. (Agent's
# HCL keeps heredoc indentation, so the contents start in column one.)
template {
  destination = ".env"
  perms       = "0400"
  contents    = <<EOT
{{- with secret (env "SNYK_BROKER_SECRET") }}
{{- range $k, $v := .Data.env }}
{{ $k }}={{ if regexMatch "'" $v }}"{{ $v }}"{{ else }}'{{ $v }}'{{ end }}
{{- end }}
{{- end }}
EOT
}

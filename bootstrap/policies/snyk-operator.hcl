# Operators of the Snyk secrets engine mounted at snyk/: configure the Snyk
# credential, manage integrations, rotate Broker tokens and dry-run SCM
# credentials. Deliberately no read on snyk/broker/*: operators manage tokens,
# Broker clients read them.
path "snyk/config" {
  capabilities = ["create", "read", "update", "delete"]
}

path "snyk/integrations" {
  capabilities = ["list"]
}

path "snyk/integrations/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

path "snyk/broker/+/+/rotate" {
  capabilities = ["update"]
}

path "snyk/scm/validate" {
  capabilities = ["update"]
}

path "snyk/status" {
  capabilities = ["read"]
}

# Universal Broker deployments: settings, credential values (write-only) and
# rotation; no read on snyk/universal/+/env, which Broker clients read.
path "snyk/universal" {
  capabilities = ["list"]
}

path "snyk/universal/+" {
  capabilities = ["create", "read", "update", "delete"]
}

path "snyk/universal/+/credentials" {
  capabilities = ["list"]
}

path "snyk/universal/+/credentials/*" {
  capabilities = ["create", "read", "update", "delete"]
}

path "snyk/universal/+/rotate" {
  capabilities = ["update"]
}

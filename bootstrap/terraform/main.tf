# The Snyk secrets engine in Vault: the plugin registered by the sum its
# release published, the mount pinned to that version, snyk/config, the
# integrations and the policies.
#
# Secrets: vault_generic_endpoint stores data_json (marked sensitive) in the
# Terraform state, so the Snyk credential and SCM credentials are in the
# state: keep it in an encrypted backend with restricted access. The
# engine never returns them on read; ignore_absent_fields keeps Terraform
# from seeing that as drift. Broker tokens never pass through Terraform.
# After `vault write snyk/config/rotate-root`, or once the engine has rotated
# a GitLab token, the copy in the state is stale: update the variable before
# the next change to that resource, or its write is refused (a bad Snyk
# credential) or puts the old SCM token back.

resource "vault_plugin" "snyk" {
  type    = "secret"
  name    = "vault-plugin-secrets-snyk"
  command = var.plugin_command
  version = var.plugin_version
  sha256  = var.plugin_sha256
}

resource "vault_mount" "snyk" {
  path           = var.mount_path
  type           = vault_plugin.snyk.name
  plugin_version = vault_plugin.snyk.version
  description    = "Snyk Broker tokens and SCM credentials"
}

resource "vault_generic_endpoint" "config" {
  path                 = "${vault_mount.snyk.path}/config"
  data_json            = jsonencode(local.config_payload)
  ignore_absent_fields = true
  # Destroying the mount removes the configuration with it.
  disable_delete = true
}

resource "vault_generic_endpoint" "integration" {
  for_each = var.integrations

  path                 = "${vault_mount.snyk.path}/integrations/${each.key}"
  data_json            = jsonencode(local.integration_payloads[each.key])
  ignore_absent_fields = true

  depends_on = [vault_generic_endpoint.config]
}

resource "vault_policy" "operator" {
  name   = "snyk-operator"
  policy = local.operator_policy
}

resource "vault_policy" "broker_reader" {
  for_each = local.broker_reader_policies

  name   = each.key
  policy = each.value
}

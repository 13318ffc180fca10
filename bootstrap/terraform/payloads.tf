# What the module writes to Vault, computed from the inputs alone (no
# provider): the request bodies of snyk/config and each integration, and the
# policies. Only fields that are set are sent, so the engine's defaults stay
# the engine's. Each body is a merge of one-field objects, not a `for` map:
# a map would turn every value into a string ("3600"), and the engine reads
# durations back as numbers, which Terraform would see as drift.

locals {
  # ca_cert is trimmed as the engine stores it (a PEM file read with file()
  # ends in a newline), so that a refresh reads back what was written.
  config_payload = merge(concat(
    [for k, v in var.config : { (k) = v } if v != null && k != "ca_cert"],
    [
      var.config.ca_cert != null ? { ca_cert = trimspace(var.config.ca_cert) } : {},
      var.snyk_api_token != null ? { api_token = var.snyk_api_token } : {},
      var.snyk_oauth != null ? { client_id = var.snyk_oauth.client_id, client_secret = var.snyk_oauth.client_secret } : {},
    ],
  )...)

  integration_payloads = {
    for key, settings in var.integrations : key => merge(concat(
      [for k, v in settings : { (k) = v } if v != null],
      [
        try(var.scm_credentials[key].token, null) != null ? { scm_token = var.scm_credentials[key].token } : {},
        try(var.scm_credentials[key].password, null) != null ? { scm_password = var.scm_credentials[key].password } : {},
      ],
    )...)
  }

  # The same policy files configure.sh loads, for the same mount.
  policies_dir = "${path.module}/../policies"

  operator_policy = replace(file("${local.policies_dir}/snyk-operator.hcl"), "snyk/", "${var.mount_path}/")

  broker_reader_policies = var.broker_readers ? {
    for key in keys(var.integrations) : "snyk-broker-${replace(key, "/", "-")}" => replace(replace(replace(
      file("${local.policies_dir}/broker-reader.hcl.tmpl"),
      "__MOUNT__", var.mount_path),
      "__ORG__", split("/", key)[0]),
    "__SCM__", split("/", key)[1])
  } : {}
}

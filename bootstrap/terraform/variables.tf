# Inputs of the Snyk secrets engine module. Durations are numbers of seconds:
# that is how the engine reads them back, so Terraform sees no drift.

variable "plugin_version" {
  description = "The plugin version to register and run (what `vault-plugin-secrets-snyk -version` prints), e.g. v0.2.0."
  type        = string
  validation {
    condition     = can(regex("^v[0-9]+\\.[0-9]+\\.[0-9]+", var.plugin_version))
    error_message = "plugin_version must be a semantic version with a leading v, e.g. v0.2.0."
  }
}

variable "plugin_sha256" {
  description = "The binary's SHA-256 from the release's SHA256SUMS (never one computed from the file being installed)."
  type        = string
  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.plugin_sha256))
    error_message = "plugin_sha256 must be 64 lowercase hex digits, the line for your platform in SHA256SUMS."
  }
}

variable "plugin_command" {
  description = "The binary's file name in the Vault servers' plugin_directory."
  type        = string
  default     = "vault-plugin-secrets-snyk"
}

variable "mount_path" {
  description = "Where the engine is mounted."
  type        = string
  default     = "snyk"
}

variable "snyk_api_token" {
  description = "The Snyk API token (or service-account API key) for snyk/config; null when snyk_oauth is set."
  type        = string
  default     = null
  sensitive   = true
}

variable "snyk_oauth" {
  description = "An OAuth service account for snyk/config instead of snyk_api_token."
  type = object({
    client_id     = string
    client_secret = string
  })
  default   = null
  sensitive = true
}

variable "config" {
  description = "Non-secret snyk/config fields (durations in seconds); unset fields keep the engine's defaults."
  type = object({
    region            = optional(string)
    api_url           = optional(string)
    broker_server_url = optional(string)
    ca_cert           = optional(string)
    ttl               = optional(number)
    rotation_period   = optional(number)
    provision_ahead   = optional(number)
    request_timeout   = optional(number)
  })
  default = {}
}

variable "integrations" {
  description = "Integrations keyed \"<name>/<scm>\" (as in snyk/integrations/<name>/<scm>), non-secret fields only; durations in seconds."
  type = map(object({
    org_id                     = optional(string)
    integration_id             = optional(string)
    scm_url                    = optional(string)
    scm_api_url                = optional(string)
    azure_org                  = optional(string)
    broker_client_url          = optional(string)
    scm_username               = optional(string)
    skip_scm_validation        = optional(bool)
    ttl                        = optional(number)
    rotation_period            = optional(number)
    rotation_schedule          = optional(string)
    rotation_window            = optional(number)
    provision_ahead            = optional(number)
    disable_automated_rotation = optional(bool)
  }))
  default = {}
  validation {
    condition     = alltrue([for k in keys(var.integrations) : can(regex("^[^/]+/(github|github-enterprise|gitlab|azure-repos|bitbucket-server)$", k))])
    error_message = "Each integrations key must be \"<name>/<scm>\" with scm one of github, github-enterprise, gitlab, azure-repos, bitbucket-server."
  }
}

variable "scm_credentials" {
  description = "The SCM credential of each integration, keyed like integrations: {token} or, for Bitbucket Server basic auth, {password} (the user name is integrations[…].scm_username)."
  type = map(object({
    token    = optional(string)
    password = optional(string)
  }))
  default   = {}
  sensitive = true
}

variable "broker_readers" {
  description = "Write a broker-reader policy, snyk-broker-<name>-<scm>, for each integration (what a Broker client's Vault role gets)."
  type        = bool
  default     = true
}

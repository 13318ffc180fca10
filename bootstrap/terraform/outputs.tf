output "mount_path" {
  description = "Where the engine is mounted."
  value       = vault_mount.snyk.path
}

output "broker_paths" {
  description = "The leased path each integration's Broker clients read."
  value       = { for key in keys(var.integrations) : key => "${vault_mount.snyk.path}/broker/${key}" }
}

output "broker_reader_policies" {
  description = "The policy name to attach to each integration's Broker client role."
  value       = { for key in keys(var.integrations) : key => "snyk-broker-${replace(key, "/", "-")}" if var.broker_readers }
}

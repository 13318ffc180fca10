# Vault Agent's address and login for the Broker clients of
# broker-overlap.yaml (mounted from the snyk-broker-agent ConfigMap beside
# bootstrap/agent/broker-client-github.hcl).
vault {
  address = "https://vault.vault.svc:8200"
}

auto_auth {
  method "kubernetes" {
    mount_path = "auth/kubernetes"
    config = {
      role = "snyk-broker-payments-github"
    }
  }
}

# The token Prometheus scrapes snyk/metrics with: that one path, nothing else.
#   vault policy write snyk-metrics-reader bootstrap/policies/metrics-reader.hcl
#   vault token create -policy=snyk-metrics-reader -orphan -period=768h -field=token > /etc/prometheus/vault-token
path "snyk/metrics" {
  capabilities = ["read"]
}

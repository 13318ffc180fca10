// Package manifests checks what an operator deploys from bootstrap/ without
// deploying it: the Dockerfiles under bootstrap/images are linted with
// BuildKit's own build checks (what `docker build --check` runs) and held to
// the project's image rules; the Helm recipe under bootstrap/helm is rendered
// with the real helm binary and validated against the vendored Vault Secrets
// Operator CRD schemas and the snyk-broker chart's values schema; the
// Terraform under bootstrap/terraform is parsed and every field it writes is
// checked against the engine's own path schemas.
//
// It is its own Go module so that BuildKit, Helm's schema inputs and HCL stay
// out of the plugin's dependency graph.
package manifests

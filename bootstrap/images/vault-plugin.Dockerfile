# syntax=docker/dockerfile:1
#
# Vault with the Snyk secrets engine in its plugin directory, and (target
# `plugin`) the plugin alone as an image for Vault's containerized plugins.
# Build from the repository root:
#
#   docker build -f bootstrap/images/vault-plugin.Dockerfile \
#     --build-arg VERSION=$(./scripts/version.sh) \
#     --build-arg COMMIT=$(git rev-parse HEAD) \
#     --build-arg BUILDDATE=$(git log -1 --format=%cI) \
#     -t vault-snyk:1.21.0 .
#   docker build -f bootstrap/images/vault-plugin.Dockerfile --target plugin \
#     -t vault-plugin-secrets-snyk:$(./scripts/version.sh) .
#
# The binary is built as `make build` builds it (static, -trimpath, the same
# ldflags), so its sha256 is the one `make release` writes into SHA256SUMS
# for linux/<arch> when VERSION, COMMIT and BUILDDATE match. Register it with
# that sum, never with one computed inside the running container.
#
# The bases are pinned to exact releases; pin them by digest too where your
# registry allows it (--build-arg GO_IMAGE=golang:1.26.8-bookworm@sha256:…).

ARG GO_IMAGE=golang:1.26.8-bookworm
ARG VAULT_IMAGE=hashicorp/vault:1.21.0

FROM ${GO_IMAGE} AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY backend ./backend
COPY cmd ./cmd
ARG VERSION=v0.0.0-unknown
ARG COMMIT=unknown
ARG BUILDDATE=unknown
ARG TARGETOS=linux
ARG TARGETARCH=amd64
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -buildvcs=false \
      -ldflags "-s -w -buildid= -X main.version=${VERSION} -X main.commit=${COMMIT} -X main.buildDate=${BUILDDATE}" \
      -o /out/vault-plugin-secrets-snyk ./cmd/vault-plugin-secrets-snyk \
 && sha256sum /out/vault-plugin-secrets-snyk > /out/vault-plugin-secrets-snyk.sha256

# The plugin alone: the OCI image `vault plugin register -oci_image=…` runs
# (Vault's containerized plugins, Linux only). The engine calls Snyk and the
# SCMs over TLS, so it carries the CA roots of the build stage.
FROM scratch AS plugin
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/vault-plugin-secrets-snyk /bin/vault-plugin-secrets-snyk
USER 65532:65532
ENTRYPOINT ["/bin/vault-plugin-secrets-snyk"]

# Vault itself with the plugin in /vault/plugins (set plugin_directory to
# it). The image runs as the unprivileged `vault` user of the base image; with
# no root to grant IPC_LOCK, set disable_mlock = true (Vault's advice for
# integrated storage) or run with the capability granted by the orchestrator.
FROM ${VAULT_IMAGE} AS vault
COPY --from=build --chown=root:root --chmod=0755 /out/vault-plugin-secrets-snyk /vault/plugins/vault-plugin-secrets-snyk
COPY --from=build --chown=root:root --chmod=0644 /out/vault-plugin-secrets-snyk.sha256 /vault/plugins/vault-plugin-secrets-snyk.sha256
ARG VERSION=v0.0.0-unknown
LABEL org.opencontainers.image.title="Vault with vault-plugin-secrets-snyk" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MPL-2.0"
USER vault

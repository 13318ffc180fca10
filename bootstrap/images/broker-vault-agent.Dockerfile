# syntax=docker/dockerfile:1
#
# The classic Snyk Broker client with Vault Agent as PID 1, as
# bootstrap/kubernetes/broker-overlap.yaml runs it: Agent authenticates,
# renders the Broker variables from snyk/broker/<name>/<scm> and supervises
# `broker client`, restarting it when the Broker token changes. Build from the
# repository root, once per SCM (the accept.json the client loads):
#
#   docker build -f bootstrap/images/broker-vault-agent.Dockerfile \
#     --build-arg SCM=github-com -t snyk-broker-vault-agent:github-com .
#
# SCM is one of the client templates shipped in the snyk-broker package:
# github-com, github-enterprise, gitlab, azure-repos, bitbucket-server,
# bitbucket-server-bearer-auth. The Broker is the npm package at the version
# scripts/broker/package-lock.json pins: the very one the end-to-end tests run
# under Vault Agent.
#
# The bases are pinned to exact releases; pin them by digest too where your
# registry allows it (--build-arg NODE_IMAGE=node:20.20.2-bookworm-slim@sha256:…).

ARG NODE_IMAGE=node:20.20.2-bookworm-slim
ARG VAULT_IMAGE=hashicorp/vault:1.21.0

# Vault's release binary is static: it runs on the Debian-based node image.
FROM ${VAULT_IMAGE} AS vault

FROM ${NODE_IMAGE} AS broker
WORKDIR /opt/snyk-broker
COPY scripts/broker/package.json scripts/broker/package-lock.json ./
# --ignore-scripts: the client needs no install hooks, and none should run.
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts

FROM ${NODE_IMAGE}
ARG SCM=github-com
COPY --from=vault /bin/vault /usr/local/bin/vault
COPY --from=broker /opt/snyk-broker/node_modules /opt/snyk-broker/node_modules
# The Broker client reads its accept list from ACCEPT; the package ships one
# per SCM. The Agent configuration lives in a mounted ConfigMap
# (/etc/snyk-broker), never in the image.
RUN ln -s /opt/snyk-broker/node_modules/.bin/broker /usr/local/bin/broker \
 && test -f "/opt/snyk-broker/node_modules/snyk-broker/dist/client-templates/${SCM}/accept.json.sample" \
 && cp "/opt/snyk-broker/node_modules/snyk-broker/dist/client-templates/${SCM}/accept.json.sample" /opt/snyk-broker/accept.json \
 && mkdir -p /etc/snyk-broker
ENV ACCEPT=/opt/snyk-broker/accept.json \
    PORT=8000
LABEL org.opencontainers.image.title="Snyk Broker client under Vault Agent (${SCM})" \
      org.opencontainers.image.licenses="MPL-2.0"
# The node image's unprivileged user; the client listens on 8000.
USER node
WORKDIR /home/node
EXPOSE 8000
ENTRYPOINT ["vault", "agent"]
# A directory: Agent loads every .hcl file of the mounted ConfigMap.
CMD ["-config=/etc/snyk-broker"]

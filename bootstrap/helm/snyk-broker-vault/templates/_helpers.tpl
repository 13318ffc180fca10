{{/* The integration as "<name>/<scm>", required. */}}
{{- define "snyk-broker-vault.integration" -}}
{{- $i := required "vault.integration is required: <name>/<scm> of the engine's integration, e.g. payments/github" .Values.vault.integration -}}
{{- if not (regexMatch "^[^/]+/(github|github-enterprise|gitlab|azure-repos|bitbucket-server)$" $i) -}}
{{- fail (printf "vault.integration %q must be <name>/<scm> with scm one of github, github-enterprise, gitlab, azure-repos, bitbucket-server" $i) -}}
{{- end -}}
{{- $i -}}
{{- end -}}

{{- define "snyk-broker-vault.brokerRelease" -}}
{{- required "broker.release is required: the Helm release name of the snyk-broker chart this feeds" .Values.broker.release -}}
{{- end -}}

{{/* Resource names: one set per integration. */}}
{{- define "snyk-broker-vault.name" -}}
{{- printf "snyk-broker-%s" (include "snyk-broker-vault.integration" . | replace "/" "-") | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "snyk-broker-vault.secretName" -}}
{{- .Values.secret.name | default (printf "%s-vault" (include "snyk-broker-vault.brokerRelease" .)) -}}
{{- end -}}

{{- define "snyk-broker-vault.authName" -}}
{{- if .Values.vault.auth.create -}}
{{- include "snyk-broker-vault.name" . -}}
{{- else -}}
{{- required "vault.auth.name is required when vault.auth.create is false" .Values.vault.auth.name -}}
{{- end -}}
{{- end -}}

{{- define "snyk-broker-vault.serviceAccountName" -}}
{{- .Values.vault.auth.serviceAccount.name | default (include "snyk-broker-vault.name" .) -}}
{{- end -}}

{{/*
The snyk-broker chart's Deployment name: "<scmType>-broker-<release>", or
"<scmType>-broker" with disableSuffixes (its templates/broker_deployment.yaml).
*/}}
{{- define "snyk-broker-vault.brokerDeployment" -}}
{{- if .Values.broker.disableSuffixes -}}
{{- printf "%s-broker" .Values.broker.scmType -}}
{{- else -}}
{{- printf "%s-broker-%s" .Values.broker.scmType (include "snyk-broker-vault.brokerRelease" .) -}}
{{- end -}}
{{- end -}}

{{/*
The field of the engine's broker secret that holds what the chart's SCM
token variable carries: the password for Bitbucket Server's basic auth
(BITBUCKET_PASSWORD; the user name is the chart's bitbucketUsername value),
the token everywhere else.
*/}}
{{- define "snyk-broker-vault.scmField" -}}
{{- if eq .Values.broker.scmType "bitbucket-server" -}}scm_password{{- else -}}scm_token{{- end -}}
{{- end -}}

{{- define "snyk-broker-vault.labels" -}}
app.kubernetes.io/name: snyk-broker-vault
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
snyk.io/broker-release: {{ include "snyk-broker-vault.brokerRelease" . }}
{{- end -}}

// Package backend is the Snyk Broker secrets engine: it holds the Snyk
// credential, turns an org's SCM integration into a brokered one, keeps the
// Broker token, rotates it on a schedule with no downtime, and serves it
// with the SCM credential as a leased bundle for Vault Agent to render.
//
// # Packages
//
//	cmd/vault-plugin-secrets-snyk   the plugin's main: plugin.ServeMultiplex(backend.Factory)
//	cmd/snyk-sim                    the simulator: snyktest and scmtest over TLS, for make dev and e2e
//	        │
//	        ▼
//	backend                         paths, storage, the rotation engine
//	   ├── backend/snyk             Snyk v1/REST/OAuth client; refusal.go reads Snyk's refusals by their words
//	   │      └── snyktest          stateful fake of Snyk, behaviour profiles for undocumented answers
//	   ├── backend/scm              SCM credential checks (GitHub, GHE, GitLab, Azure Repos, Bitbucket Server)
//	   │      └── scmtest           fakes of the SCM APIs
//	   ├── backend/httpx            TLS client with the operator's CA, bounded retries, "outcome unknown"
//	   ├── backend/fault            fault injection and call counting for the fakes
//	   └── backend/tlstest          a test CA
//
// The clients never import the engine, and the shipped plugin imports no
// fake.
//
// # Files of this package
//
//	backend.go, config.go            the backend, the config and its cache
//	path_*.go                        one path family each, help text at the bottom
//	integration.go                   the stored integration entry and its status
//	integration_fields.go            the field schema of integration paths
//	integration_input.go             an integration write, one method per field group
//	integration_create.go            obtaining the first token: import, enable or adopt
//	token_steps.go                   enable Broker, provision, switch: WAL, call, store
//	secret_broker_token.go           the leased secret and its TTL
//	schedule.go                      an entry's policy, next action and back-off
//	rotation.go                      the queue, the loop, one step per due integration
//	rotation_load.go                 building the queue from storage, retried until it works
//	rotation_steps.go                obtainProvisional (the one way to a provisional token), switch, manual rotate
//	rotation_lanes.go                one provisional token per Snyk group: reservations by key, waiters
//	rotation_budget.go               the Snyk request budget and the 429 pause
//	rotation_unsaved.go              results Snyk returned that storage refused, kept until stored
//	kept_results.go                  the keep-until-stored map of rotation_unsaved.go and universal_unsaved.go
//	rollback.go                      WAL entries and what recovery makes of each kind
//	caller_errors.go                 Snyk refusals as 400s the operator can act on
//	events.go                        rotation events
//	config_input.go                  a config write: fields and the trust boundary
//	scm_check.go, scm_monitor.go     SCM credential checks, at create and every scm_check_period
//	scm_rotation.go                  GitLab token self-rotation
//	root_rotation.go                 rotate-root: the engine's own client secret
//	path_status.go, metrics.go       snyk/status and snyk/metrics (Prometheus text)
//	integration_cache.go             decoded integrations for reads, and the storage wrapper every write goes through
//	integration_index.go             which entry manages an integration ID or owns a token, without reading them all
//	integration_scan.go              reading every stored integration, eight reads in flight
//	system_view.go                   Vault's system view, with the mount's local flag remembered (one gRPC round trip less per broker read)
//	universal_deployment.go          a Universal Broker deployment: the stored entry and its status
//	universal_input.go               deployment and credential fields, and how a write applies them
//	universal_checks.go              a deployment checked against Snyk and its SCMs
//	universal_client_secret.go       the install's client and secret, as writes check them
//	universal_monitor.go             the scheduled check, run unlocked, recorded if nothing changed
//	universal_rotation.go            the client-secret rotation with overlap: create, verify, switch, retire
//	universal_unsaved.go             a created secret storage refused, kept until stored
//	universal_recovery.go            deployments queued at start-up; an interrupted creation reported
//
// # The rotation state machine
//
// One integration's rotation_state, what is stored at each step, and the
// Snyk call between. Every call with a side effect is preceded by a WAL
// entry (local storage) and followed by storing its result before anything
// else; the WAL entry is deleted last. A kill -9 between any two steps
// leaves either the stored state before the call, or that state plus a WAL
// entry that recovery reads.
//
//	                   create (import | enable | adopt)
//	                                │
//	       ┌────────────────────────┴─────────────────────────┐
//	       ▼ import / enable                          adopt   ▼
//	┌────────────┐  next_vault_rotation - provision_ahead  ┌─────────────┐
//	│   active   │ ───── reserve slot, WAL, provision ────▶ │ provisioned │
//	│ current    │        store provisional token           │ current     │
//	│            │                                          │ provisional │
//	└────────────┘                                          └─────────────┘
//	       ▲                                                       │ next_vault_rotation
//	       │ switch answered 200, or "nothing to switch"           ▼ (or manual rotate)
//	       │ after an attempt whose answer was lost          ┌────────────────┐
//	       └──── store current = provisional, free slot ─── │ switch_pending │
//	                                                         │ WAL, switch    │
//	                                                         └────────────────┘
//	                                                            │ refused, 5xx, lost answer:
//	                                                            │ serve the old token, back off,
//	                                                            └─ retry (switch_outcome_unknown
//	                                                               set when the answer was lost)
//
// What is stored at each step:
//
//	active          current_token; next_vault_rotation
//	provisioned     + provisional_token, provisioned_at; the group's slot is held (in memory,
//	                rebuilt from stored provisional tokens at start-up); an adopted
//	                integration has no current_token until its first switch
//	switch_pending  same, state written before the switch call; switch_outcome_unknown after a lost answer
//	back to active  current_token = the provisional one; next_vault_rotation moves one period on
//
// A result Snyk returned that storage refused is kept in memory
// (rotation_unsaved.go) and stored before anything else happens to the
// integration, so the step resumes where it was.
package backend

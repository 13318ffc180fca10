package e2e

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/vault/api"
)

// Secret hygiene, checked on every stack the end-to-end tests start: Vault
// runs at log level trace (the plugin's log, forwarded by Vault, follows
// it) with a file audit device, and when the stack stops, neither log may
// hold any credential the simulator ever issued or accepted (Snyk API
// tokens and keys, OAuth secrets and access tokens, every Broker token,
// current or provisional, and every SCM credential), in clear. The audit log
// holds what passed through Vault only HMAC'd; TestSecretHygiene checks the
// HMACs themselves.

// minSecretLength skips values too short to search for without false hits
// (none of the simulator's credentials is that short).
const minSecretLength = 12

// enableFileAudit enables a file audit device writing to audit.log beside
// the server's log.
func (v *vaultServer) enableFileAudit() error {
	err := v.client.Sys().EnableAuditWithOptions("file", &api.EnableAuditOptions{
		Type:    "file",
		Options: map[string]string{"file_path": v.auditPath()},
	})
	if err != nil {
		return fmt.Errorf("enabling the file audit device: %w", err)
	}
	return nil
}

func (v *vaultServer) auditPath() string { return filepath.Join(v.dir, "audit.log") }

// simSecrets is every credential the simulator issued or accepted.
func (s *simulator) secrets() ([]string, error) {
	var out []string
	err := s.adminDo("GET", "/secrets", nil, &out)
	return out, err
}

// secretLeaks searches the Vault log (the plugin's included) and the audit
// log for every credential of the simulator; each hit is described without
// the secret itself.
func (s *stack) secretLeaks() []string {
	secrets, err := s.sim.secrets()
	if err != nil {
		return []string{"cannot list the simulator's secrets: " + err.Error()}
	}
	var leaks []string
	for _, f := range []struct{ name, path string }{{"Vault server log", s.vault.logPath}, {"audit log", s.vault.auditPath()}} {
		leaks = append(leaks, scanForSecrets(f.name, f.path, secrets)...)
	}
	return leaks
}

// scanForSecrets reports every line of the file holding one of secrets.
func scanForSecrets(name, path string, secrets []string) []string {
	f, err := os.Open(path)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", name, err)}
	}
	defer f.Close()
	var leaks []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		for _, sec := range heldSecrets(text, secrets) {
			leaks = append(leaks, fmt.Sprintf("%s (%s) line %d holds a credential (%s…, %d chars): %s", name, path, line, sec[:4], len(sec), redactLine(text, secrets)))
		}
	}
	if err := sc.Err(); err != nil {
		leaks = append(leaks, fmt.Sprintf("%s: %v", name, err))
	}
	return leaks
}

// heldSecrets lists the secrets text holds in clear.
func heldSecrets(text string, secrets []string) []string {
	var held []string
	for _, sec := range secrets {
		if len(sec) >= minSecretLength && strings.Contains(text, sec) {
			held = append(held, sec)
		}
	}
	return held
}

// redactLine shows a line with every secret masked, cut to 300 bytes.
func redactLine(text string, secrets []string) string {
	for _, sec := range secrets {
		if len(sec) >= minSecretLength {
			text = strings.ReplaceAll(text, sec, "<SECRET>")
		}
	}
	if len(text) > 300 {
		text = text[:300] + "…"
	}
	return text
}

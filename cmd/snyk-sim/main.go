// Command snyk-sim serves the fake Snyk API and fake SCMs (GitHub, GitHub
// Enterprise, GitLab, Azure DevOps, Bitbucket Server) over TLS on loopback,
// pre-seeded with a demo world. `make dev` and the end-to-end tests point a
// real Vault at it; users can use it to try templates before touching Snyk.
//
// It writes <dir>/ca.pem (the CA to give the engine as ca_cert) and
// <dir>/sim.json (every URL and demo credential), and serves a plain-HTTP
// admin API on loopback for inspecting state and injecting faults.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/snyk/snyktest"
	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/tlstest"
)

func main() {
	dir := flag.String("dir", ".dev/sim", "directory for ca.pem and sim.json")
	host := flag.String("host", "127.0.0.1", "loopback address to listen on")
	snykPort := flag.Int("snyk-port", 0, "port of the fake Snyk API (0 = any free port)")
	adminPort := flag.Int("admin-port", 0, "port of the admin API (0 = any free port)")
	latency := flag.Duration("latency", 0, "delay every upstream response by this much")
	rateLimit := flag.Int("rate-limit", 0, "Snyk requests allowed per -rate-window before 429s (0 = unlimited)")
	rateWindow := flag.Duration("rate-window", time.Minute, "Snyk rate-limit window")
	retryAfter := flag.Bool("retry-after", true, "send Retry-After on rate-limit 429s")
	profile := flag.String("profile", "default", "how the fake Snyk answers the calls whose failures Snyk does not document: "+
		"default, or one of -list-profiles")
	listProfiles := flag.Bool("list-profiles", false, "print the behaviour profiles and exit")
	flag.Parse()

	if *listProfiles {
		printProfiles(os.Stdout)
		return
	}
	p, ok := snyktest.ProfileNamed(*profile)
	if !ok {
		log.Fatalf("snyk-sim: unknown -profile %q (see -list-profiles)", *profile)
	}
	if err := run(*dir, *host, *snykPort, *adminPort, *latency, *rateLimit, *rateWindow, *retryAfter, p); err != nil {
		log.Fatalf("snyk-sim: %v", err)
	}
}

func run(dir, host string, snykPort, adminPort int, latency time.Duration, rateLimit int, rateWindow time.Duration, retryAfter bool, profile snyktest.Profile) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ca, err := tlstest.NewCA()
	if err != nil {
		return err
	}
	caPath, _ := filepath.Abs(filepath.Join(dir, "ca.pem"))
	if err := ca.WriteCertFile(caPath); err != nil {
		return err
	}
	w := newWorld()
	w.configure(latency, rateLimit, rateWindow, retryAfter, profile)

	info := w.info
	info.CACertFile = caPath
	info.PID = os.Getpid()

	servers := []*http.Server{}
	serveTLS := func(target string, h http.Handler, port int) (string, error) {
		certs, err := newCertSwitch(ca)
		if err != nil {
			return "", err
		}
		w.certs[target] = certs
		ln, err := net.Listen("tcp", net.JoinHostPort(host, fmt.Sprint(port)))
		if err != nil {
			return "", err
		}
		srv := &http.Server{Handler: h, TLSConfig: certs.tlsConfig(), ReadHeaderTimeout: 10 * time.Second,
			ConnState: certs.track}
		servers = append(servers, srv)
		go func() {
			if err := srv.ServeTLS(ln, "", ""); err != nil && err != http.ErrServerClosed {
				log.Printf("server: %v", err)
			}
		}()
		return "https://" + ln.Addr().String(), nil
	}
	if info.SnykURL, err = serveTLS("snyk", w.snyk, snykPort); err != nil {
		return err
	}
	for _, f := range []struct {
		target string
		dst    *string
		h      http.Handler
	}{
		{"github", &info.GitHubURL, w.github}, {"ghe", &info.GHEURL, w.ghe}, {"gitlab", &info.GitLabURL, w.gitlab},
		{"azure", &info.AzureURL, w.azure}, {"bitbucket", &info.BitbucketURL, w.bitbucket},
	} {
		if *f.dst, err = serveTLS(f.target, f.h, 0); err != nil {
			return err
		}
	}
	// The demo GitLab connection names the fake GitLab, whose port is
	// known only now.
	if err := w.seedUniversalGitLab(&info, info.GitLabURL); err != nil {
		return err
	}

	adminLn, err := net.Listen("tcp", net.JoinHostPort(host, fmt.Sprint(adminPort)))
	if err != nil {
		return err
	}
	info.AdminURL = "http://" + adminLn.Addr().String()
	adminSrv := &http.Server{Handler: w.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
	servers = append(servers, adminSrv)
	go func() {
		if err := adminSrv.Serve(adminLn); err != nil && err != http.ErrServerClosed {
			log.Printf("admin: %v", err)
		}
	}()
	w.info = info

	if err := writeEnvFile(filepath.Join(dir, "sim.env"), info); err != nil {
		return err
	}
	raw, _ := json.MarshalIndent(info, "", "  ")
	// Written last and atomically: its existence means every server is up.
	tmp := filepath.Join(dir, "sim.json.tmp")
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "sim.json")); err != nil {
		return err
	}
	log.Printf("snyk-sim ready: snyk=%s github=%s admin=%s (details in %s)", info.SnykURL, info.GitHubURL, info.AdminURL, filepath.Join(dir, "sim.json"))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for _, s := range servers {
		_ = s.Shutdown(ctx)
	}
	return nil
}

// writeEnvFile writes sim.json's values as shell assignments (SIM_SNYK_URL=…)
// so scripts can source them without a JSON parser.
func writeEnvFile(path string, info Info) error {
	raw, err := json.Marshal(info)
	if err != nil {
		return err
	}
	var m map[string]interface{}
	if err := json.Unmarshal(raw, &m); err != nil {
		return err
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		var v string
		switch x := m[k].(type) {
		case string:
			v = x
		case float64:
			v = strconv.FormatFloat(x, 'f', -1, 64)
		case map[string]interface{}:
			// One level deep, scalars only: nested objects (universal's
			// maps) have no sensible shell form; sim.json has them.
			for name, id := range x {
				switch id.(type) {
				case string, float64:
					fmt.Fprintf(&b, "SIM_%s_%s='%v'\n", strings.ToUpper(k), strings.ToUpper(name), id)
				}
			}
			continue
		default:
			continue
		}
		fmt.Fprintf(&b, "SIM_%s='%s'\n", strings.ToUpper(k), v)
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// printProfiles lists the behaviour profiles with the answers they give.
func printProfiles(out io.Writer) {
	fmt.Fprintln(out, "default: the fake's defaults (400/409 refusals with its own wording; enabling a brokered integration returns its token)")
	for _, p := range snyktest.Profiles() {
		b := p.Behaviour
		if b.EnableOnBrokered != snyktest.EnableError {
			fmt.Fprintf(out, "%s: enabling Broker on a brokered integration succeeds (%s)\n", p.Name, b.EnableOnBrokered)
			continue
		}
		fmt.Fprintf(out, "%s: every refusal is HTTP %d; not brokered %q; provisional conflict %q; nothing to switch %q; already brokered %q\n",
			p.Name, b.NotBrokeredStatus, b.NotBrokeredMessage, b.ProvisionConflictMessage, b.SwitchWithoutProvisionalMessage, b.EnableOnBrokeredMessage)
	}
}

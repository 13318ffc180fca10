package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend/tlstest"
)

// TLS modes a fake server can present, switched at run time through the
// admin API, so that tests can break a certificate in the middle of a run.
const (
	tlsValid     = "valid"
	tlsExpired   = "expired"
	tlsWrongHost = "wrong-host"
)

// certSwitch serves one of three certificates issued by the simulator's CA:
// a valid one, an expired one, and one for another host name. Handshakes are
// counted, because a client that refuses the certificate never reaches the
// HTTP layer where the fault injector counts calls.
type certSwitch struct {
	mu         sync.Mutex
	mode       string
	certs      map[string]*tls.Certificate
	handshakes int
	// conns are the server's open connections: a new mode closes them all,
	// so that it applies to the next call rather than whenever a client
	// dials again (HTTP/2 and keep-alive connections live for minutes).
	conns map[net.Conn]bool
}

func newCertSwitch(ca *tlstest.CA) (*certSwitch, error) {
	cs := &certSwitch{mode: tlsValid, certs: map[string]*tls.Certificate{}, conns: map[net.Conn]bool{}}
	for mode, opts := range map[string]tlstest.CertificateOptions{
		tlsValid:     {Hosts: []string{"localhost", "127.0.0.1", "::1"}},
		tlsExpired:   {Hosts: []string{"localhost", "127.0.0.1", "::1"}, Expired: true},
		tlsWrongHost: {Hosts: []string{"snyk-sim.wrong-host.invalid"}},
	} {
		c, err := ca.Certificate(opts)
		if err != nil {
			return nil, err
		}
		cs.certs[mode] = &c
	}
	return cs, nil
}

func (cs *certSwitch) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			cs.mu.Lock()
			defer cs.mu.Unlock()
			cs.handshakes++
			return cs.certs[cs.mode], nil
		},
	}
}

func (cs *certSwitch) set(mode string) error {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if _, ok := cs.certs[mode]; !ok {
		return fmt.Errorf("unknown TLS mode %q (valid, expired, wrong-host)", mode)
	}
	cs.mode = mode
	for c := range cs.conns {
		_ = c.Close()
		delete(cs.conns, c)
	}
	return nil
}

// track is the server's ConnState hook.
func (cs *certSwitch) track(c net.Conn, st http.ConnState) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	switch st {
	case http.StateNew:
		cs.conns[c] = true
	case http.StateClosed, http.StateHijacked:
		delete(cs.conns, c)
	}
}

func (cs *certSwitch) state() (string, int) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.mode, cs.handshakes
}

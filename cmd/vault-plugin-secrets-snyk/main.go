// Command vault-plugin-secrets-snyk is the plugin binary that Vault runs for the
// Snyk Broker secrets engine.
package main

import (
	"fmt"
	"os"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/plugin"

	"github.com/snyk-vault/vault-plugin-secrets-snyk/backend"
)

// version is stamped at build time with -ldflags "-X main.version=vX.Y.Z" and
// reported to Vault as the plugin's RunningVersion, so that
// `vault plugin register -version=vX.Y.Z` matches what the binary says.
var version = "v0.0.0-dev"

// commit and buildDate are stamped the same way. buildDate is the commit's
// date, not the time of the build, so that two builds of one commit are
// byte-identical and their sums can be compared.
var (
	commit    = "unknown"
	buildDate = "unknown"
)

func main() {
	// Vault never passes -version, so it is answered before the plugin's own
	// flags are parsed.
	if len(os.Args) == 2 && (os.Args[1] == "-version" || os.Args[1] == "--version") {
		fmt.Printf("vault-plugin-secrets-snyk %s\ncommit: %s\nbuilt: %s\n", version, commit, buildDate)
		return
	}
	apiClientMeta := &api.PluginAPIClientMeta{}
	flags := apiClientMeta.FlagSet()
	if err := flags.Parse(os.Args[1:]); err != nil {
		fatal(err)
	}

	// The TLS flags only matter for Vault versions without AutoMTLS; current
	// servers ignore them, but keeping them lets older servers run the plugin.
	tlsProvider := api.VaultPluginTLSProvider(apiClientMeta.GetTLSConfig())

	backend.Version = version
	if err := plugin.ServeMultiplex(&plugin.ServeOpts{
		BackendFactoryFunc: backend.Factory,
		TLSProviderFunc:    tlsProvider,
	}); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	hclog.New(&hclog.LoggerOptions{}).Error("plugin shutting down", "error", err)
	os.Exit(1)
}

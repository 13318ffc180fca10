// Command vault is a thin wrapper around Vault's own CLI so that tests can run a
// real Vault server and Vault Agent built from the Go module proxy (release
// binaries cannot be downloaded on the build machines).
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}

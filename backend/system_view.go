package backend

import (
	"context"
	"sync"

	"github.com/hashicorp/vault/sdk/logical"
)

// Setup is the framework's, with a system view that remembers whether the
// mount is local.
func (b *backend) Setup(ctx context.Context, conf *logical.BackendConfig) error {
	if conf != nil && conf.System != nil {
		withView := *conf
		withView.System = &mountSystemView{SystemView: conf.System}
		conf = &withView
	}
	return b.Backend.Setup(ctx, conf)
}

// mountSystemView answers LocalMount from memory and passes everything else
// to Vault. Before every request to a path marked
// ForwardPerformanceSecondary (every broker read), the framework asks
// LocalMount, which from a plugin is a gRPC round trip back to Vault: on a
// leased read that costs about as much as the read itself. A mount's local
// flag is chosen when the mount is enabled (`vault secrets enable -local`)
// and no tune changes it, so the first answer holds for this backend's life.
// Replication state, by contrast, can change under a running mount and is
// always asked afresh.
type mountSystemView struct {
	logical.SystemView

	localOnce sync.Once
	local     bool
}

func (v *mountSystemView) LocalMount() bool {
	v.localOnce.Do(func() { v.local = v.SystemView.LocalMount() })
	return v.local
}

package backend

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// TestConfigCacheDroppedOnInvalidate: a config written on another node
// reaches this one through Invalidate, which must drop the cached copy.
func TestConfigCacheDroppedOnInvalidate(t *testing.T) {
	env := newTestEnv(t)
	env.configure(map[string]interface{}{"ttl": "1h"})
	ctx := context.Background()
	if cfg, _ := env.b.config(ctx, env.view); cfg.TTL != time.Hour {
		t.Fatalf("setup: ttl %s", cfg.TTL)
	}
	// Another node writes storage directly.
	stored, _ := getConfig(ctx, env.storage)
	stored.TTL = 7 * time.Hour
	if err := putConfig(ctx, env.storage, stored); err != nil {
		t.Fatal(err)
	}
	if cfg, _ := env.b.config(ctx, env.view); cfg.TTL != time.Hour {
		t.Fatalf("setup: the config is not cached (ttl %s)", cfg.TTL)
	}
	env.b.invalidate(ctx, configStoragePath)
	if cfg, _ := env.b.config(ctx, env.view); cfg.TTL != 7*time.Hour {
		t.Fatalf("after Invalidate the cached config is still served (ttl %s)", cfg.TTL)
	}
}

// TestConfigCacheGenerationGuard: a read that loaded the config before a
// write finished must not cache what it read over the newer config.
func TestConfigCacheGenerationGuard(t *testing.T) {
	env := newTestEnv(t)
	env.configure(map[string]interface{}{"ttl": "1h"})
	ctx := context.Background()
	env.b.resetClient()

	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	env.view.mu.Lock()
	env.view.afterGet = func(key string) {
		if key == configStoragePath {
			once.Do(func() { close(held); <-release })
		}
	}
	env.view.mu.Unlock()
	done := make(chan *snykConfig)
	go func() {
		cfg, _ := env.b.config(ctx, env.view)
		done <- cfg
	}()
	<-held // the reader has the old config in hand
	env.view.mu.Lock()
	env.view.afterGet = nil
	env.view.mu.Unlock()
	resp, err := env.request(logical.UpdateOperation, "config", map[string]interface{}{"ttl": "3h"})
	if err != nil || resp.IsError() {
		t.Fatalf("config write: %v %v", resp, err)
	}
	close(release)
	if old := <-done; old.TTL != time.Hour {
		t.Fatalf("setup: the racing reader saw ttl %s", old.TTL)
	}
	if cfg, _ := env.b.config(ctx, env.view); cfg.TTL != 3*time.Hour {
		t.Fatalf("a racing reader cached the old config over the new one (ttl %s)", cfg.TTL)
	}
}

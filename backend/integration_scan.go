package backend

import (
	"context"
	"errors"
	"strings"

	"github.com/hashicorp/vault/sdk/logical"
	"golang.org/x/sync/errgroup"
)

// Scans read every stored integration: the rotation engine's load at mount
// initialisation, and the few mount-wide questions the index cannot answer.
// From a plugin every storage call is a gRPC round trip to Vault, so a scan
// keeps scanReaders of them in flight: one at a time, loading a mount of
// 10,000 integrations took ~3 s, nearly all of it waiting.
const scanReaders = 8

// listIntegrations loads every stored integration; an unreadable one fails
// the whole list.
func listIntegrations(ctx context.Context, s logical.Storage) ([]*integrationEntry, error) {
	entries, err := getIntegrations(ctx, s, nil)
	return compact(entries), err
}

// listReadableIntegrations loads every stored integration this version can
// read, skipping entries that are corrupt or of a newer storage format: a
// mount-wide check made while creating one integration must not fail because
// of another, unreadable one (which cannot rotate anything either).
func listReadableIntegrations(ctx context.Context, s logical.Storage) ([]*integrationEntry, error) {
	entries, err := getIntegrations(ctx, s, func(string, error) {})
	return compact(entries), err
}

// getIntegrations reads every stored integration. An unreadable entry is
// passed to skip, and left out, or, with a nil skip, fails the scan. The
// result is in storage order (by org, then SCM), with nil where an entry
// vanished or was skipped.
func getIntegrations(ctx context.Context, s logical.Storage, skip func(key string, err error)) ([]*integrationEntry, error) {
	keys, err := listIntegrationKeys(ctx, s)
	if err != nil {
		return nil, err
	}
	entries := make([]*integrationEntry, len(keys))
	err = inParallel(ctx, len(keys), func(ctx context.Context, i int) error {
		name, kind := splitQueueKey(keys[i])
		e, err := getIntegration(ctx, s, name, kind)
		switch {
		case skip != nil && errors.Is(err, errCorruptEntry):
			skip(keys[i], err)
		case err != nil:
			return err
		default:
			entries[i] = e
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return entries, nil
}

// listIntegrationKeys lists every integration as "name/scm", in storage
// order.
func listIntegrationKeys(ctx context.Context, s logical.Storage) ([]string, error) {
	orgs, err := s.List(ctx, integrationStoragePrefix)
	if err != nil {
		return nil, err
	}
	perOrg := make([][]string, len(orgs))
	err = inParallel(ctx, len(orgs), func(ctx context.Context, i int) error {
		scms, err := s.List(ctx, integrationStoragePrefix+orgs[i])
		for _, kind := range scms {
			perOrg[i] = append(perOrg[i], strings.TrimSuffix(orgs[i], "/")+"/"+kind)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, k := range perOrg {
		keys = append(keys, k...)
	}
	return keys, nil
}

// inParallel calls read for 0..n-1 with up to scanReaders calls in flight;
// the first error cancels the rest and is returned. A cancelled ctx is an
// error too: a scan cut short must never pass for a complete one.
func inParallel(ctx context.Context, n int, read func(ctx context.Context, i int) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(scanReaders)
	for i := 0; i < n && gctx.Err() == nil; i++ {
		g.Go(func() error { return read(gctx, i) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

// compact drops the nils of a scan.
func compact(entries []*integrationEntry) []*integrationEntry {
	out := make([]*integrationEntry, 0, len(entries))
	for _, e := range entries {
		if e != nil {
			out = append(out, e)
		}
	}
	return out
}

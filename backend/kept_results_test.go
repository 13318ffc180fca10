package backend

import (
	"context"
	"errors"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// A kept result is forgotten only once it is stored, and never when a newer
// one was kept while it was being stored: that one is the newest state.
func TestKeptResults(t *testing.T) {
	type entry struct{ v string }
	clone := func(e *entry) *entry { c := *e; return &c }
	var stored []string
	var during func()
	fail := false
	k := newKeptResults(clone, func(_ context.Context, _ logical.Storage, e *entry) error {
		if fail {
			return errors.New("storage refused")
		}
		stored = append(stored, e.v)
		if during != nil {
			during()
		}
		return nil
	})
	ctx := context.Background()
	if ok, err := k.store(ctx, nil, "a"); ok || err != nil {
		t.Fatalf("nothing kept: store = %v, %v", ok, err)
	}

	k.keep("a", &entry{"1"})
	fail = true
	if ok, err := k.store(ctx, nil, "a"); ok || err == nil {
		t.Fatalf("refused: store = %v, %v", ok, err)
	}
	if got := k.get("a"); got == nil || got.v != "1" {
		t.Fatalf("a refused store forgot the entry: %v", got)
	}
	got := k.get("a")
	got.v = "changed"
	if k.get("a").v != "1" {
		t.Fatal("get hands out the kept entry itself, not a copy")
	}

	fail = false
	during = func() { k.keep("a", &entry{"2"}) }
	if ok, err := k.store(ctx, nil, "a"); !ok || err != nil {
		t.Fatalf("store = %v, %v", ok, err)
	}
	if got := k.get("a"); got == nil || got.v != "2" {
		t.Fatalf("the result kept while another was being stored was forgotten: %v", got)
	}
	during = nil
	if ok, _ := k.store(ctx, nil, "a"); !ok || k.get("a") != nil {
		t.Fatal("a stored entry is still kept")
	}
	if want := []string{"1", "2"}; len(stored) != 2 || stored[0] != want[0] || stored[1] != want[1] {
		t.Fatalf("stored %v, want %v", stored, want)
	}

	k.keep("b", &entry{"3"})
	k.drop("b")
	if k.get("b") != nil {
		t.Fatal("drop kept the entry")
	}
}

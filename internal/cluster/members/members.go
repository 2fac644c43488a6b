// Package members is the membership of a powcoord cluster: every process
// (front-end, ledger writer, coordinator) writes a heartbeat, a small
// JSON Member, every second to its own key of the KV bucket
// powcoord-members, whose TTL (3 s by default) removes the key of a
// process that stopped. The cluster coordinator's GET /api/cluster lists
// the bucket (List).
package members

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/powcoord/powcoord/internal/cluster/bus"
)

// Bucket is the KV bucket of the heartbeats.
const Bucket = "powcoord-members"

// TTL is how long a heartbeat stays without a newer one.
const TTL = 3 * time.Second

// Interval is how often Heartbeat writes.
const Interval = time.Second

// Roles of the members.
const (
	RoleFrontend    = "frontend"
	RoleLedger      = "ledger"
	RoleCoordinator = "coordinator"
)

// Member is one process's heartbeat. Fields a role has no use for are
// left out of the JSON.
type Member struct {
	ID   string    `json:"id"`
	Role string    `json:"role"` // frontend, ledger or coordinator
	Time time.Time `json:"time"` // when the heartbeat was written
	HTTP string    `json:"http,omitempty"`

	// Front-ends.
	Stratum         string  `json:"stratum,omitempty"`
	Sessions        int     `json:"sessions"`
	SharesPerSecond float64 `json:"shares_per_second"`
	Accepted        uint64  `json:"accepted"`
	// Prefix is the leased extranonce1 prefix (nil while the front-end
	// holds none and serves no miner); PrefixBits its width.
	Prefix     *uint32 `json:"prefix,omitempty"`
	PrefixBits int     `json:"prefix_bits,omitempty"`

	// Ledger writers: the shares not yet stored (nil when unknown).
	LagMessages *uint64 `json:"lag_messages,omitempty"`

	// Coordinators: "active" or "standby".
	State string `json:"state,omitempty"`
}

// Ensure creates the bucket with replicas copies, or updates it, and
// returns it.
func Ensure(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	if replicas < 1 || replicas > 5 {
		return nil, fmt.Errorf("members: %d replicas: want 1 to 5", replicas)
	}
	cfg := jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "powcoord: heartbeats of the cluster's processes",
		History:     1,
		TTL:         TTL,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		kv, err := js.CreateOrUpdateKeyValue(actx, cfg)
		cancel()
		if err == nil {
			return kv, nil
		}
		if ctx.Err() != nil || !bus.Transient(err) {
			return nil, fmt.Errorf("members: creating or updating KV bucket %s (%d replicas): %w", Bucket, replicas, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("members: creating or updating KV bucket %s: %w (last: %v)", Bucket, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Heartbeat writes snapshot() (with ID, Role and Time set) to key id
// every Interval until ctx ends, then deletes the key so the member
// leaves the list at once. A write that fails is logged (debug: the
// connection reconnects by itself) and the next one tried on time.
func Heartbeat(ctx context.Context, kv jetstream.KeyValue, id, role string, log *slog.Logger, snapshot func() Member) {
	if log == nil {
		log = slog.Default()
	}
	t := time.NewTicker(Interval)
	defer t.Stop()
	for {
		m := snapshot()
		m.ID, m.Role, m.Time = id, role, time.Now().UTC()
		b, _ := json.Marshal(m)
		pctx, cancel := context.WithTimeout(ctx, Interval)
		if _, err := kv.Put(pctx, id, b); err != nil && ctx.Err() == nil {
			log.Debug("heartbeat not written", "bucket", kv.Bucket(), "id", id, "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), time.Second)
			kv.Delete(dctx, id)
			cancel()
			return
		case <-t.C:
		}
	}
}

// List returns every live member, sorted by role and id.
func List(ctx context.Context, kv jetstream.KeyValue) ([]Member, error) {
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("members: listing bucket %s: %w", kv.Bucket(), err)
	}
	var names []string
	for k := range keys.Keys() {
		names = append(names, k)
	}
	out := []Member{}
	for _, k := range names {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("members: reading key %q of bucket %s: %w", k, kv.Bucket(), err)
		}
		var m Member
		if err := json.Unmarshal(e.Value(), &m); err != nil {
			continue // not a heartbeat of this version
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return cmp.Or(cmp.Compare(a.Role, b.Role), cmp.Compare(a.ID, b.ID)) })
	return out, nil
}

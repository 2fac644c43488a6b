// Package lease hands out extranonce1 prefixes to the Stratum front-ends
// of a powcoord cluster, so that no two front-ends ever give miners the
// same work: every extranonce1 a front-end's coordinator hands out starts
// with the front-end's prefix (coordinator.Config.Extranonce1Prefix), and
// a prefix is held by one front-end at a time.
//
// # The bucket
//
// Prefixes live in the JetStream KV bucket powcoord-prefixes (Bucket),
// one key per prefix ("prefix-000" … "prefix-255"), with a TTL: a key
// that is not renewed expires, and its prefix is free again. A front-end
// claims the lowest free prefix with a create (which fails when the key
// exists) and renews it every ttl/3 with an update that expects the
// revision of its previous write (bus.ClaimKey, the same lease as the
// coordinators' leader election), so a front-end whose key expired and
// was claimed by another cannot take it back.
//
// A Lease reports its end on Lost: a renewal was refused, the connection
// closed, or no renewal succeeded for 9/10 of the TTL. That is before the
// key can expire, so by the time another front-end may claim the prefix
// the old holder has stopped using it — provided it stops at once, as
// `powcoord frontend` does (it closes every session).
//
// That holds only when every holder renews at a third of the bucket's
// TTL, so the TTL is the cluster's: set once by the front-end that
// creates the bucket, and a front-end asking for another one is refused
// at start (Ensure).
package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/powcoord/powcoord/internal/cluster/bus"
)

// Bits is the width of a leased extranonce1 prefix: 8 bits, so up to 256
// front-ends, each with 2^24 extranonce1 values of its own.
const Bits = 8

// Count is the number of prefixes, 1 << Bits.
const Count = 1 << Bits

// Bucket is the KV bucket of the prefix leases.
const Bucket = "powcoord-prefixes"

// DefaultTTL is the lease's lifetime without renewal in a bucket created
// without a TTL of its own (Ensure with ttl zero).
const DefaultTTL = 3 * time.Second

// Key returns the KV key of prefix p.
func Key(p uint32) string { return fmt.Sprintf("prefix-%03d", p) }

// BucketConfig returns the configuration Ensure gives the bucket.
func BucketConfig(ttl time.Duration, replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "powcoord: extranonce1 prefix leases of the front-ends",
		History:     1,
		TTL:         ttl,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		// A marker on expiry, so that waiting front-ends see it.
		LimitMarkerTTL: ttl,
	}
}

// Ensure returns the bucket and its TTL, creating it with a TTL of ttl
// (DefaultTTL when zero) and replicas copies when it does not exist.
//
// The TTL is the cluster's, set once by the front-end that creates the
// bucket: an existing bucket keeps its settings, and a non-zero ttl that
// differs from its TTL is refused with an error naming both, because a
// front-end renewing at a third of a longer TTL than the bucket's would
// see its key expire between renewals, and another front-end could lease
// its prefix while it still serves it. A zero ttl takes the bucket's.
// To change the TTL, stop every front-end and delete the bucket.
func Ensure(ctx context.Context, js jetstream.JetStream, ttl time.Duration, replicas int) (jetstream.KeyValue, time.Duration, error) {
	if ttl != 0 && ttl < 100*time.Millisecond {
		return nil, 0, fmt.Errorf("lease: TTL %v: want at least 100ms", ttl)
	}
	if replicas < 1 || replicas > 5 {
		return nil, 0, fmt.Errorf("lease: %d replicas: want 1 to 5", replicas)
	}
	create := ttl
	if create == 0 {
		create = DefaultTTL
	}
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		kv, have, err := ensureOnce(actx, js, BucketConfig(create, replicas))
		cancel()
		if err == nil {
			if have <= 0 {
				return nil, 0, fmt.Errorf("lease: KV bucket %s has no TTL: a lost front-end's prefix would never be freed; delete the bucket so that a front-end creates it", Bucket)
			}
			if ttl != 0 && ttl != have {
				return nil, 0, fmt.Errorf("lease: TTL %v disagrees with the cluster's lease TTL %v (KV bucket %s): every front-end must use the cluster's TTL (give the same value, or none to take the cluster's)", ttl, have, Bucket)
			}
			return kv, have, nil
		}
		if ctx.Err() != nil || !bus.Transient(err) {
			return nil, 0, fmt.Errorf("lease: opening or creating KV bucket %s (TTL %v, %d replicas): %w", Bucket, create, replicas, err)
		}
		select {
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("lease: opening or creating KV bucket %s: %w (last: %v)", Bucket, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ensureOnce opens the bucket, or creates it with cfg when it does not
// exist, and returns it with its TTL.
func ensureOnce(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, time.Duration, error) {
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, cfg)
		if errors.Is(err, jetstream.ErrBucketExists) {
			// Created meanwhile by another front-end, with other settings.
			kv, err = js.KeyValue(ctx, cfg.Bucket)
		}
	}
	if err != nil {
		return nil, 0, err
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, 0, err
	}
	return kv, st.TTL(), nil
}

// Lease is a held prefix.
type Lease struct {
	prefix uint32
	l      *bus.Leader
	since  time.Time
}

// Prefix returns the leased prefix, 0 to Count-1: the Extranonce1Prefix
// to give the coordinator, with Extranonce1PrefixBits = Bits.
func (l *Lease) Prefix() uint32 { return l.prefix }

// Key returns the lease's KV key.
func (l *Lease) Key() string { return Key(l.prefix) }

// ID returns the holder id the key holds.
func (l *Lease) ID() string { return l.l.ID() }

// Since returns when the lease was won.
func (l *Lease) Since() time.Time { return l.since }

// Revision returns the key's revision when the lease was won; a later
// holder of the same prefix has a greater one.
func (l *Lease) Revision() uint64 { return l.l.Term() }

// Lost returns a channel closed when the lease has ended; Err says why.
// The holder must stop handing out work with the prefix at once.
func (l *Lease) Lost() <-chan struct{} { return l.l.Lost() }

// Err returns nil while the lease is held, and afterwards why it ended
// (an error wrapping bus.ErrNotLeader).
func (l *Lease) Err() error { return l.l.Err() }

// Renew renews the lease now (it is also renewed every ttl/3 in the
// background); it fails, wrapping bus.ErrNotLeader, when the lease was
// taken over or has ended.
func (l *Lease) Renew(ctx context.Context) error { return l.l.Renew(ctx) }

// Release ends the lease and deletes the key, so the prefix is free at
// once rather than after the TTL.
func (l *Lease) Release(ctx context.Context) error { return l.l.Resign(ctx) }

// Acquire claims the lowest free prefix in kv (a bucket made by Ensure)
// as id, with a lease of ttl (the bucket's TTL, as Ensure returns it;
// DefaultTTL when zero). When every prefix is taken it tries again every ttl/4, logging
// a warning, until one is free or ctx ends. The lease is renewed until
// ctx ends or Release is called (both free the prefix at once) or it is
// lost. ids must be unique among front-ends.
func Acquire(ctx context.Context, kv jetstream.KeyValue, id string, ttl time.Duration, log *slog.Logger) (*Lease, error) {
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if log == nil {
		log = slog.Default()
	}
	if id == "" {
		return nil, errors.New("lease: acquire: empty holder id")
	}
	for {
		taken := map[string]bool{}
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if keys, err := kv.ListKeys(lctx); err == nil {
			for k := range keys.Keys() {
				taken[k] = true
			}
		}
		cancel()
		var last error
		for p := uint32(0); p < Count; p++ {
			if taken[Key(p)] {
				continue
			}
			l, err := bus.ClaimKey(ctx, kv, Key(p), id, ttl)
			if err == nil {
				return &Lease{prefix: p, l: l, since: time.Now()}, nil
			}
			if ctx.Err() != nil {
				return nil, fmt.Errorf("lease: acquiring a prefix in bucket %s as %q: %w", kv.Bucket(), id, ctx.Err())
			}
			if errors.Is(err, bus.ErrTaken) {
				continue
			}
			if !bus.Transient(err) {
				return nil, fmt.Errorf("lease: acquiring prefix %d in bucket %s as %q: %w", p, kv.Bucket(), id, err)
			}
			last = err
			break // the cluster is not answering: wait, then start over
		}
		if last == nil {
			log.Warn("every extranonce1 prefix is leased, waiting for one", "bucket", kv.Bucket(), "prefixes", Count, "id", id)
		} else {
			log.Warn("leasing an extranonce1 prefix failed, retrying", "bucket", kv.Bucket(), "id", id, "err", last)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("lease: acquiring a prefix in bucket %s as %q: %w", kv.Bucket(), id, ctx.Err())
		case <-time.After(ttl / 4):
		}
	}
}

// Holders returns the holder id of every leased prefix in kv.
func Holders(ctx context.Context, kv jetstream.KeyValue) (map[uint32]string, error) {
	out := map[uint32]string{}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("lease: listing bucket %s: %w", kv.Bucket(), err)
	}
	for k := range keys.Keys() {
		var p uint32
		if _, err := fmt.Sscanf(k, "prefix-%03d", &p); err != nil || p >= Count {
			continue
		}
		id, _, err := bus.Holder(ctx, kv, k)
		if err != nil {
			return nil, fmt.Errorf("lease: %w", err)
		}
		if id != "" {
			out[p] = id
		}
	}
	return out, nil
}

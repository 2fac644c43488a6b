// Package bus holds the cluster's thin layer over NATS JetStream: connecting
// to a list of servers, the streams and KV bucket the cluster uses
// (EnsureStreams), publishing with an acknowledgement that survives the
// loss of a server (Publish, PublishAll), appends fenced by the stream's
// last sequence (Appender), and leader election on a KV key with a TTL
// (Elect).
//
// # Streams
//
//   - JOBS (subjects powcoord.jobs.>): the current job per subject; keeps one
//     message per subject, so a front-end that subscribes with "last per
//     subject" gets the job in force at once.
//   - SHARES (powcoord.shares.>): accepted shares, a work queue for the
//     ledger writers. A message is a front-end's batch of shares with a
//     Nats-Msg-Id of its own (internal/cluster/sharelog), so a retried
//     publish is stored once within the duplicate window; the ledger's
//     unique key on each share's header hash stores a share sent again
//     in another batch once.
//   - BLOCKS (powcoord.blocks.>): found blocks on their way to the active
//     coordinator, deduplicated by the block hash the same way.
//   - CHAIN (powcoord.chain.>): the embedded chain's blocks, appended by the
//     active coordinator only through an Appender, so that a deposed leader
//     cannot append (see Claim).
//   - KV bucket powcoord-leader: leader election keys, with a TTL.
//   - Object stores powcoord-templates and powcoord-found: bodies of job
//     and found-block messages larger than the servers' max_payload (see
//     Externalize).
//
// Every stream and the bucket are file-backed with Replicas copies (3 on a
// 3-server cluster).
package bus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ParseURLs splits a comma-separated list of NATS server URLs (as given to
// --cluster) and checks each: scheme nats or tls, a host and a port.
func ParseURLs(list string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(list, ",") {
		s := strings.TrimSpace(part)
		if s == "" {
			continue
		}
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("bus: NATS server URL %q: %v", s, err)
		}
		if u.Scheme != "nats" && u.Scheme != "tls" {
			return nil, fmt.Errorf("bus: NATS server URL %q: scheme %q, want nats:// or tls://", s, u.Scheme)
		}
		host, port, err := net.SplitHostPort(u.Host)
		if err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("bus: NATS server URL %q: want host:port after the scheme", s)
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("bus: no NATS server URL in %q", list)
	}
	return out, nil
}

// Connect connects to the first of urls that answers, within the deadline
// of ctx (or 5 s without one), and keeps reconnecting to any of them
// (forever) when the connection drops. The error names every URL when none
// answers. name identifies the client to the servers (monitoring pages);
// opts are applied after the package's defaults.
func Connect(ctx context.Context, urls []string, name string, opts ...nats.Option) (*nats.Conn, error) {
	if len(urls) == 0 {
		return nil, errors.New("bus: connect: no NATS server URL given")
	}
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
		if timeout <= 0 {
			return nil, fmt.Errorf("bus: connecting to NATS at %s: %w", strings.Join(urls, ", "), context.DeadlineExceeded)
		}
	}
	all := append([]nats.Option{
		nats.Name(name),
		nats.Timeout(timeout / time.Duration(len(urls))),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100 * time.Millisecond),
		nats.ReconnectJitter(50*time.Millisecond, 50*time.Millisecond),
		nats.PingInterval(time.Second),
		nats.MaxPingsOutstanding(3),
		nats.DontRandomize(),
	}, opts...)
	type result struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(strings.Join(urls, ","), all...)
		done <- result{nc, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("bus: connecting to NATS at %s: none answered: %w", strings.Join(urls, ", "), r.err)
		}
		return r.nc, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, fmt.Errorf("bus: connecting to NATS at %s: %w", strings.Join(urls, ", "), ctx.Err())
	}
}

// New returns the JetStream API on nc, with async publishes that time out
// after 10 s rather than never.
func New(nc *nats.Conn) (jetstream.JetStream, error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("bus: JetStream on %s: %w", nc.ConnectedUrlRedacted(), err)
	}
	return js, nil
}

// Stream, subject and bucket names of the cluster.
const (
	StreamJobs   = "JOBS"
	StreamShares = "SHARES"
	StreamBlocks = "BLOCKS"
	StreamChain  = "CHAIN"

	SubjectJobs   = "powcoord.jobs"   // a job subject is SubjectJobs + "." + a token
	SubjectShares = "powcoord.shares" // likewise; one token per front-end, say
	SubjectBlocks = "powcoord.blocks"
	SubjectChain  = "powcoord.chain"

	BucketLeader = "powcoord-leader"
)

// StreamsConfig says how EnsureStreams creates the streams. Zero fields
// take the defaults.
type StreamsConfig struct {
	// Replicas is the number of copies of every stream (default 3; at
	// most the number of servers).
	Replicas int
	// LeaderTTL is how long a leader key lives without renewal (default
	// 3 s): a standby takes over at most this long after the leader dies.
	LeaderTTL time.Duration
	// Duplicates is the duplicate window of SHARES and BLOCKS (default
	// 2 min): a message with the Nats-Msg-Id of one stored this recently
	// is acknowledged as a duplicate and not stored again.
	Duplicates time.Duration
	// SharesMaxBytes caps SHARES (default 1 GiB; -1: no limit). When it
	// is full, publishes fail (discard new) rather than dropping shares.
	SharesMaxBytes int64
	// KeepExisting creates only what is missing and leaves existing
	// streams and buckets as they are. Front-ends and ledger writers set
	// it: the cluster coordinators own the settings (replicas, leader
	// TTL), and a process started with other flags must not change them
	// under a running cluster.
	KeepExisting bool
}

func (c StreamsConfig) withDefaults() StreamsConfig {
	if c.Replicas == 0 {
		c.Replicas = 3
	}
	if c.LeaderTTL == 0 {
		c.LeaderTTL = 3 * time.Second
	}
	if c.Duplicates == 0 {
		c.Duplicates = 2 * time.Minute
	}
	if c.SharesMaxBytes == 0 {
		c.SharesMaxBytes = 1 << 30
	}
	return c
}

// Streams are the cluster's streams and its leader bucket.
type Streams struct {
	Jobs, Shares, Blocks, Chain jetstream.Stream
	Leader                      jetstream.KeyValue
}

// StreamConfigs returns the configurations EnsureStreams applies, for
// documentation and for operators who create the streams themselves.
func StreamConfigs(cfg StreamsConfig) []jetstream.StreamConfig {
	cfg = cfg.withDefaults()
	return []jetstream.StreamConfig{{
		Name:              StreamJobs,
		Description:       "powcoord: the current job per subject",
		Subjects:          []string{SubjectJobs + ".>"},
		Storage:           jetstream.FileStorage,
		Replicas:          cfg.Replicas,
		MaxMsgsPerSubject: 1,
		Discard:           jetstream.DiscardOld,
	}, {
		Name:        StreamShares,
		Description: "powcoord: accepted shares, consumed by the ledger writers",
		Subjects:    []string{SubjectShares + ".>"},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Retention:   jetstream.WorkQueuePolicy,
		Duplicates:  cfg.Duplicates,
		MaxBytes:    cfg.SharesMaxBytes,
		Discard:     jetstream.DiscardNew,
	}, {
		Name:        StreamBlocks,
		Description: "powcoord: found blocks for the active coordinator to submit",
		Subjects:    []string{SubjectBlocks + ".>"},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Duplicates:  cfg.Duplicates,
	}, {
		Name:        StreamChain,
		Description: "powcoord: the embedded chain's blocks, appended by the active coordinator",
		Subjects:    []string{SubjectChain + ".>"},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Duplicates:  cfg.Duplicates,
		DenyDelete:  true,
		DenyPurge:   true,
	}}
}

// EnsureStreams creates the cluster's streams and leader bucket, or
// updates them to cfg when they exist (an unchangeable setting that
// differs is an error naming the stream). It is safe to call from every
// process at start-up.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg StreamsConfig) (*Streams, error) {
	cfg = cfg.withDefaults()
	if cfg.Replicas < 1 || cfg.Replicas > 5 {
		return nil, fmt.Errorf("bus: %d replicas: want 1 to 5", cfg.Replicas)
	}
	if cfg.LeaderTTL < 100*time.Millisecond {
		return nil, fmt.Errorf("bus: leader TTL %v: want at least 100ms", cfg.LeaderTTL)
	}
	var got []jetstream.Stream
	for _, sc := range StreamConfigs(cfg) {
		s, err := retry(ctx, func(ctx context.Context) (jetstream.Stream, error) {
			if cfg.KeepExisting {
				s, err := js.Stream(ctx, sc.Name)
				if err == nil || !errors.Is(err, jetstream.ErrStreamNotFound) {
					return s, err
				}
				if s, err = js.CreateStream(ctx, sc); err == nil || !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
					return s, err
				}
				return js.Stream(ctx, sc.Name) // made by another process meanwhile
			}
			return js.CreateOrUpdateStream(ctx, sc)
		})
		if err != nil {
			return nil, fmt.Errorf("bus: creating or updating stream %s (%d replicas): %w", sc.Name, sc.Replicas, err)
		}
		got = append(got, s)
	}
	kv, err := retry(ctx, func(ctx context.Context) (jetstream.KeyValue, error) {
		if cfg.KeepExisting {
			kv, err := js.KeyValue(ctx, BucketLeader)
			if err == nil || !errors.Is(err, jetstream.ErrBucketNotFound) {
				return kv, err
			}
			if kv, err = js.CreateKeyValue(ctx, leaderBucketConfig(cfg)); err == nil || !errors.Is(err, jetstream.ErrBucketExists) {
				return kv, err
			}
			return js.KeyValue(ctx, BucketLeader)
		}
		return js.CreateOrUpdateKeyValue(ctx, leaderBucketConfig(cfg))
	})
	if err != nil {
		return nil, fmt.Errorf("bus: creating or updating KV bucket %s (TTL %v, %d replicas): %w", BucketLeader, cfg.LeaderTTL, cfg.Replicas, err)
	}
	for _, oc := range ObjectStoreConfigs(cfg) {
		_, err := retry(ctx, func(ctx context.Context) (jetstream.ObjectStore, error) {
			if cfg.KeepExisting {
				o, err := js.ObjectStore(ctx, oc.Bucket)
				if err == nil || !errors.Is(err, jetstream.ErrBucketNotFound) {
					return o, err
				}
				if o, err = js.CreateObjectStore(ctx, oc); err == nil || !errors.Is(err, jetstream.ErrBucketExists) {
					return o, err
				}
				return js.ObjectStore(ctx, oc.Bucket)
			}
			return js.CreateOrUpdateObjectStore(ctx, oc)
		})
		if err != nil {
			return nil, fmt.Errorf("bus: creating or updating object store %s (%d replicas): %w", oc.Bucket, oc.Replicas, err)
		}
	}
	return &Streams{Jobs: got[0], Shares: got[1], Blocks: got[2], Chain: got[3], Leader: kv}, nil
}

// retry calls f with a per-attempt timeout until it succeeds, fails for
// good, or ctx ends: a cluster that is still electing its leaders answers
// nothing for a while.
func retry[T any](ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	return retryEach(ctx, 5*time.Second, f)
}

// errNoPeersForPlacement is JetStream's error code for "no suitable peers
// for placement": a replicated stream or bucket asked for while one of
// its servers is not (yet) in the cluster, as when the cluster is still
// starting or a server restarts.
const errNoPeersForPlacement = 10005

// placementPending reports whether err is JetStream refusing to place a
// replicated stream because a server is not there yet: worth asking
// again while ctx lasts.
func placementPending(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errNoPeersForPlacement
}

// retryEach is retry with a per-attempt timeout of its own.
func retryEach[T any](ctx context.Context, each time.Duration, f func(context.Context) (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, each)
		v, err := f(actx)
		cancel()
		if err == nil || ctx.Err() != nil || !(transient(err) || placementPending(err)) {
			if err != nil && attempt > 1 {
				err = fmt.Errorf("attempt %d: %w", attempt, err)
			}
			return v, err
		}
		if werr := wait(ctx); werr != nil {
			return v, fmt.Errorf("attempt %d: %w (last: %v)", attempt, werr, err)
		}
	}
}

func leaderBucketConfig(cfg StreamsConfig) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      BucketLeader,
		Description: "powcoord: leader election",
		History:     1,
		TTL:         cfg.LeaderTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		// Expiry leaves a marker that watchers see, so a standby learns
		// at once that the leader's key is gone.
		LimitMarkerTTL: cfg.LeaderTTL,
	}
}

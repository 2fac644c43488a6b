package bus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Large payloads. A NATS message is capped by the servers' max_payload
// (1 MiB unless configured otherwise), and a Bitcoin template or block is
// up to 4 MB of transactions. A body that does not fit one message is
// stored in a JetStream object store (chunked and replicated like the
// streams) under the hex SHA-256 of its bytes, and the message carries
// no body, only the header HeaderObject naming the object. Readers call
// Body, which fetches the object and checks it against its name. Small
// bodies, the common case on the embedded chain, travel inline as before.
const (
	// HeaderObject names the object holding a message's body.
	HeaderObject = "Powcoord-Object"
	// BucketTemplates holds job messages too large to publish inline.
	// Objects expire after TemplateObjectTTL: a job is replaced within
	// seconds to minutes.
	BucketTemplates = "powcoord-templates"
	// BucketFound holds found blocks too large to publish inline. They
	// are kept for FoundObjectTTL, long past any retry.
	BucketFound = "powcoord-found"
	// TemplateObjectTTL and FoundObjectTTL are the buckets' max ages.
	TemplateObjectTTL = 30 * time.Minute
	FoundObjectTTL    = 7 * 24 * time.Hour
	// MaxLarge is the largest body Externalize accepts (64 MiB); a
	// Bitcoin block is at most 4 MB.
	MaxLarge = 64 << 20
	// refreshAfter is how old a stored object may be before Externalize
	// stores it again rather than reusing it (well inside both TTLs).
	refreshAfter = 5 * time.Minute
	// Headroom is what a message's subject and headers may take beside
	// its body when deciding whether the body fits.
	Headroom = 8 << 10
)

// ObjectStoreConfigs returns the object stores EnsureStreams creates.
func ObjectStoreConfigs(cfg StreamsConfig) []jetstream.ObjectStoreConfig {
	cfg = cfg.withDefaults()
	return []jetstream.ObjectStoreConfig{{
		Bucket:      BucketTemplates,
		Description: "powcoord: job messages larger than max_payload",
		TTL:         TemplateObjectTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	}, {
		Bucket:      BucketFound,
		Description: "powcoord: found blocks larger than max_payload",
		TTL:         FoundObjectTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	}}
}

// Fits reports whether a body of n bytes can be published inline on nc.
func Fits(nc *nats.Conn, n int) bool {
	limit := nc.MaxPayload()
	return limit <= 0 || int64(n)+Headroom <= limit
}

// Externalize makes m publishable: when m.Data fits one message on nc it
// leaves m as it is; otherwise it stores m.Data in bucket under its
// SHA-256 (an object of that name already complete is kept: it holds the
// same bytes), empties m.Data and sets HeaderObject. It returns once the
// object store has acknowledged every chunk.
func Externalize(ctx context.Context, js jetstream.JetStream, bucket string, m *nats.Msg) error {
	if Fits(js.Conn(), len(m.Data)) {
		return nil
	}
	if len(m.Data) > MaxLarge {
		return fmt.Errorf("bus: message of %d bytes on %s is larger than the %d bytes this build stores", len(m.Data), m.Subject, MaxLarge)
	}
	sum := sha256.Sum256(m.Data)
	name := hex.EncodeToString(sum[:])
	_, err := retryEach(ctx, attemptFor(len(m.Data)), func(ctx context.Context) (struct{}, error) {
		obj, err := js.ObjectStore(ctx, bucket)
		if err != nil {
			return struct{}{}, err
		}
		// The same bytes stored recently are kept; older ones are stored
		// again, which restarts their age in the bucket.
		if info, err := obj.GetInfo(ctx, name); err == nil && info.Size == uint64(len(m.Data)) && !info.Deleted && time.Since(info.ModTime) < refreshAfter {
			return struct{}{}, nil
		}
		_, err = obj.PutBytes(ctx, name, m.Data)
		return struct{}{}, err
	})
	if err != nil {
		return fmt.Errorf("bus: storing %d bytes for %s in object store %s via %s: %w", len(m.Data), m.Subject, bucket, js.Conn().ConnectedUrlRedacted(), err)
	}
	if m.Header == nil {
		m.Header = nats.Header{}
	}
	m.Header.Set(HeaderObject, name)
	m.Data = nil
	return nil
}

// ObjectGoneAfter is how long Body keeps asking for an object that is
// not found before it reports ErrObjectGone (a variable for tests).
var ObjectGoneAfter = 10 * time.Second

// ErrObjectGone is wrapped by Body when the object a message names is not
// in its bucket (expired, or never stored): asking again will not help.
var ErrObjectGone = errors.New("object not found")

// Body returns a message's body: data itself, or, when h names an object
// (HeaderObject), that object's bytes from bucket, checked against the
// SHA-256 in its name.
func Body(ctx context.Context, js jetstream.JetStream, bucket string, data []byte, h nats.Header) ([]byte, error) {
	name := h.Get(HeaderObject)
	if name == "" {
		return data, nil
	}
	want, err := hex.DecodeString(name)
	if err != nil || len(want) != sha256.Size {
		return nil, fmt.Errorf("bus: %s header %q: want the 64 hex digits of a SHA-256: %w", HeaderObject, name, ErrObjectGone)
	}
	var body []byte
	first := time.Now()
	for pause := 25 * time.Millisecond; ; pause = min(2*pause, time.Second) {
		body, err = retryEach(ctx, attemptFor(0), func(ctx context.Context) ([]byte, error) {
			obj, err := js.ObjectStore(ctx, bucket)
			if err != nil {
				return nil, err
			}
			return obj.GetBytes(ctx, name)
		})
		// The message naming an object is published only after the object
		// store acknowledged the object, so "not found" at first is a
		// replica that has not caught up: object reads are direct gets,
		// which any replica answers (seen within 1 ms of the publish on a
		// 3-server cluster), and a digest mismatch is such a replica's
		// chunks not yet complete (seen too). Only a name still missing
		// or wrong after ObjectGoneAfter is gone.
		stale := errors.Is(err, jetstream.ErrObjectNotFound) || errors.Is(err, jetstream.ErrDigestMismatch)
		if !stale || time.Since(first) >= ObjectGoneAfter || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, fmt.Errorf("bus: object %s in %s: %w", name, bucket, ErrObjectGone)
	}
	if err != nil {
		return nil, fmt.Errorf("bus: fetching object %s from %s via %s: %w", name, bucket, js.Conn().ConnectedUrlRedacted(), err)
	}
	if got := sha256.Sum256(body); hex.EncodeToString(got[:]) != name {
		return nil, fmt.Errorf("bus: object %s in %s: its %d bytes hash to %x: %w", name, bucket, len(body), got, ErrObjectGone)
	}
	return body, nil
}

// attemptFor is how long one attempt to store or fetch an object of n
// bytes may take (n 0: unknown, as large as a block may be): 10 s plus 5 s
// a MiB, so that a loaded machine moving a 4 MB block in 128 KiB chunks
// is not cut off and retried from the start for ever.
func attemptFor(n int) time.Duration {
	if n <= 0 {
		n = 4 << 20
	}
	return 10*time.Second + time.Duration(n>>20)*5*time.Second
}

// PublishMsg is Publish for a message with headers (such as one
// Externalize has rewritten).
func PublishMsg(ctx context.Context, js jetstream.JetStream, m *nats.Msg, msgID string) (*jetstream.PubAck, error) {
	return publishMsg(ctx, js, m, msgID)
}

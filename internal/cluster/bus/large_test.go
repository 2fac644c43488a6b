package bus

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/powcoord/powcoord/internal/clustertest"
)

// A body stored through one server is read at once through another. The
// reader's direct get may be answered by a replica that has not yet
// applied the object (this lost a 4 MB job once in CI: "object not
// found" 1 ms after the publish), so Body must keep asking rather than
// call the object gone; a found block read that way would be dropped.
func testLargeReadAfterWrite(t *testing.T, c *clustertest.NATSCluster) {
	urls := c.URLs()
	wnc, wjs := connect(t, urls[:1], "large-writer")
	ensure(t, c, wjs)
	_, rjs := connect(t, urls[2:], "large-reader")
	for i := range 12 {
		body := bytes.Repeat([]byte{byte(i), 0xa5, byte(i * 7)}, 600<<10) // 1.8 MB, past max_payload
		m := &nats.Msg{Subject: "powcoord.test.large", Data: body}
		if err := Externalize(t.Context(), wjs, BucketFound, m); err != nil {
			t.Fatal(err)
		}
		if m.Data != nil || len(m.Header.Get(HeaderObject)) != 64 {
			t.Fatalf("round %d: after Externalize the message has %d bytes and object %q (max_payload %d)", i, len(m.Data), m.Header.Get(HeaderObject), wnc.MaxPayload())
		}
		got, err := Body(t.Context(), rjs, BucketFound, nil, m.Header)
		if err != nil {
			t.Fatalf("round %d: reading the object through another server right after it was stored: %v", i, err)
		}
		if !bytes.Equal(got, body) {
			t.Fatalf("round %d: read %d bytes, stored %d", i, len(got), len(body))
		}
	}

	// A name never stored is gone once ObjectGoneAfter has passed.
	old := ObjectGoneAfter
	ObjectGoneAfter = 300 * time.Millisecond
	defer func() { ObjectGoneAfter = old }()
	sum := sha256.Sum256([]byte("never stored"))
	h := nats.Header{}
	h.Set(HeaderObject, hex.EncodeToString(sum[:]))
	start := time.Now()
	_, err := Body(t.Context(), rjs, BucketFound, nil, h)
	if !errors.Is(err, ErrObjectGone) {
		t.Fatalf("missing object: %v, want ErrObjectGone", err)
	}
	if d := time.Since(start); d < ObjectGoneAfter {
		t.Errorf("missing object reported gone after %v, before ObjectGoneAfter %v", d, ObjectGoneAfter)
	}
	// A header that is not a SHA-256 is refused without asking.
	h.Set(HeaderObject, "xyz")
	if _, err := Body(t.Context(), rjs, BucketFound, nil, h); !errors.Is(err, ErrObjectGone) || !bytes.Contains([]byte(err.Error()), []byte(`"xyz"`)) {
		t.Fatalf("bad object header: %v", err)
	}
}

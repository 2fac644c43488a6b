package coordinator

import (
	"testing"

	"github.com/powcoord/powcoord/internal/stratum"
)

// TestAppendNotifyMatchesEncoder: the cached, spliced notify line is
// byte-for-byte what the JSON encoder writes, for several job ids and both
// clean flags, and the cache is keyed so that they do not mix.
func TestAppendNotifyMatchesEncoder(t *testing.T) {
	c := fuzzCoordinator(t)
	ep := c.jobs.current()
	script, _ := c.cfg.Source.PayoutScript("alice")
	cb, err := ep.coinbase(script, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, clean := range []bool{true, false, true} {
		for _, id := range []string{"1", "ff", "1a2b3c"} {
			j := &job{id: id, ep: ep, cb: cb}
			got := ep.appendNotify([]byte("x"), j, clean)
			want, _ := stratum.AppendRequest([]byte("x"), nil, "mining.notify", j.notify(clean))
			if string(got) != string(want) {
				t.Fatalf("job %s clean %v:\n got %s\nwant %s", id, clean, got, want)
			}
		}
	}
	if len(ep.lines) != 2 {
		t.Fatalf("%d cached lines, want 2 (one per clean flag)", len(ep.lines))
	}
}

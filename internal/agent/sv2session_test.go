package agent

import (
	"strings"
	"testing"

	"github.com/powcoord/powcoord/internal/sv2"
)

func TestParseSV2URL(t *testing.T) {
	key := [32]byte{118, 99, 112, 0, 151, 156, 28, 17, 175, 12, 48, 11, 205, 140, 127, 228, 134, 16, 252, 233, 185, 193, 30, 61, 174, 227, 90, 224, 176, 138, 116, 85}
	u := "stratum2+tcp://thepool.com:34254/9bXiEd8boQVhq7WddEcERUL5tyyJVFYdU8th3HfbNXK3Yw6GRXh"
	p, err := parseURL(u)
	if err != nil || !p.v2 || p.addr != "thepool.com:34254" || p.authority != key || p.tls {
		t.Fatalf("%s: %+v %v", u, p, err)
	}
	if sv2.URL(p.addr, p.authority) != u {
		t.Fatal("URL does not round-trip")
	}
	for _, c := range []struct{ url, want string }{
		{"stratum2+tcp://thepool.com:34254", "needs the pool authority key"},
		{"stratum2+tcp://thepool.com:34254/", "needs the pool authority key"},
		{"stratum2+tcp://thepool.com:34254/9bXiEd8boQVhq7WddEcERUL5tyyJVFYdU8th3HfbNXK3Yw6GRXi", "checksum"},
		{"stratum2+tcp://thepool.com/9bXiEd8boQVhq7WddEcERUL5tyyJVFYdU8th3HfbNXK3Yw6GRXh", "host:port"},
		{"stratum2+ssl://thepool.com:1/x", "not supported"},
	} {
		if _, err := parseURL(c.url); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", c.url, err, c.want)
		}
	}
}

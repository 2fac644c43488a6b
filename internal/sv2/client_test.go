package sv2

import (
	"strings"
	"testing"
)

// TestParseURL: the host:port and key of a good URL, and an error naming
// the URL and the fault for each bad one.
func TestParseURL(t *testing.T) {
	key := [32]byte{118, 99, 112, 0, 151, 156, 28, 17, 175, 12, 48, 11, 205, 140, 127, 228, 134, 16, 252, 233, 185, 193, 30, 61, 174, 227, 90, 224, 176, 138, 116, 85}
	good := URL("pool.example:3336", key)
	addr, got, err := ParseURL(good)
	if err != nil || addr != "pool.example:3336" || got != key {
		t.Fatalf("ParseURL(%q) = %q, %x, %v", good, addr, got, err)
	}
	if addr, _, err := ParseURL(URL("[::1]:3336", key)); err != nil || addr != "[::1]:3336" {
		t.Fatalf("IPv6: %q, %v", addr, err)
	}
	k := EncodeAuthorityKey(key)
	for _, c := range []struct{ url, want string }{
		{"stratum+tcp://pool:3333", `scheme "stratum+tcp"`},
		{"stratum2+tcp://pool:3336/", "needs the pool authority key"},
		{"stratum2+tcp://pool:3336/" + k[:len(k)-1] + "x", "pool URL"},
		{"stratum2+tcp://pool/" + k, "want host:port"},
		{"stratum2+tcp://:3336/" + k, "missing host"},
		{"stratum2+tcp://pool:0/" + k, `port "0"`},
		{"stratum2+tcp://pool:70000/" + k, `port "70000"`},
		{"stratum2+tcp://pool:3336/" + k + "?a=b", "want only"},
	} {
		if _, _, err := ParseURL(c.url); err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "pool URL") {
			t.Errorf("ParseURL(%q): %v, want an error with %q", c.url, err, c.want)
		}
	}
}

// FuzzParseURL: any string either parses into an address and key that
// make the same URL again (up to the spelling of host and port), or
// fails with an error naming the URL; never a panic.
func FuzzParseURL(f *testing.F) {
	f.Add("stratum2+tcp://pool:3336/9bXiEd8boQVhq7WddEcERUL5tyyJVFYdU8th3HfbNXK3Yw6GRXh")
	f.Fuzz(func(t *testing.T, s string) {
		addr, key, err := ParseURL(s)
		if err != nil {
			if !strings.Contains(err.Error(), "pool URL") {
				t.Fatalf("error without the URL: %v", err)
			}
			return
		}
		again, key2, err := ParseURL(URL(addr, key))
		if err != nil || again != addr || key2 != key {
			t.Fatalf("%q: %q %x does not round-trip: %q %x %v", s, addr, key, again, key2, err)
		}
	})
}

package proxy

import (
	"bytes"
	"strings"
	"testing"

	"github.com/powcoord/powcoord/internal/sv2"
)

// TestNewRefusesBadConfig: each bad setting is refused with an error
// naming it and its value.
func TestNewRefusesBadConfig(t *testing.T) {
	good := sv2.URL("127.0.0.1:3336", [32]byte{1})
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{User: "u"}, "no upstream"},
		{Config{Upstreams: []string{good}}, "user identity is empty"},
		{Config{Upstreams: []string{"stratum+tcp://127.0.0.1:3333"}, User: "u"}, `"stratum+tcp://127.0.0.1:3333"`},
		{Config{Upstreams: []string{good}, User: "u", VersionMask: 0xffffffff}, "version mask ffffffff"},
		{Config{Upstreams: []string{good}, User: "u", MinDifficulty: 2, MaxDifficulty: 1}, "max difficulty 1 is below min difficulty 2"},
		{Config{Upstreams: []string{good}, User: "u", StartDifficulty: -1}, "start -1"},
	} {
		if _, err := New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v): %v, want an error with %q", c.cfg, err, c.want)
		}
	}
}

// TestExtranonceSlices: a miner's extranonce1 is the channel's prefix,
// its two slot bytes and, when the channel leaves more than 8 bytes,
// zero padding; its extranonce2 is the rest, at most 8 bytes.
func TestExtranonceSlices(t *testing.T) {
	p := &Proxy{}
	for _, c := range []struct {
		size    int
		slot    uint16
		en1     []byte
		en2Size int
	}{
		{4, 0x0102, []byte{0xa, 0xb, 0xc, 0xd, 1, 2}, 2},
		{10, 0xfffe, []byte{0xa, 0xb, 0xc, 0xd, 0xff, 0xfe}, 8},
		{16, 7, []byte{0xa, 0xb, 0xc, 0xd, 0, 7, 0, 0, 0, 0, 0, 0}, 8},
	} {
		en1, n := p.extranonceFor(&channel{prefix: []byte{0xa, 0xb, 0xc, 0xd}, size: c.size}, c.slot)
		if !bytes.Equal(en1, c.en1) || n != c.en2Size || len(en1)+n != 4+c.size {
			t.Errorf("channel extranonce %d, slot %#x: extranonce1 %x, extranonce2 %d bytes; want %x, %d", c.size, c.slot, en1, n, c.en1, c.en2Size)
		}
	}
}

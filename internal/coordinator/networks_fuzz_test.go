package coordinator

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseNetworks(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  string
	}{
		{"", nil, ""},
		{" , ", nil, ""},
		{"127.0.0.2", []string{"127.0.0.2/32"}, ""},
		{"10.1.2.3/8, 2001:db8::1/32", []string{"10.0.0.0/8", "2001:db8::/32"}, ""},
		{"::ffff:192.168.1.0/120", []string{"192.168.1.0/24"}, ""},
		{"::ffff:10.0.0.1", []string{"10.0.0.1/32"}, ""},
		{"10.0.0.0/8,example.org", nil, `network "example.org": want an address or CIDR`},
		{"10.0.0.0/33", nil, `network "10.0.0.0/33"`},
		{"fe80::1%eth0", nil, `network "fe80::1%eth0"`},
		{"::ffff:0.0.0.0/64", nil, `network "::ffff:0.0.0.0/64": an IPv4-mapped prefix needs at least 96 bits`},
	} {
		got, err := ParseNetworks(tc.in)
		if tc.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
				t.Errorf("ParseNetworks(%q): err %v, want one starting %q", tc.in, err, tc.err)
			}
			continue
		}
		var s []string
		for _, p := range got {
			s = append(s, p.String())
		}
		if err != nil || !slices.Equal(s, tc.want) {
			t.Errorf("ParseNetworks(%q) = %v, %v; want %v", tc.in, s, err, tc.want)
		}
	}
}

// FuzzParseNetworks: never a panic; an error names the entry; every
// network parsed is masked, unmapped, and contains the address its entry
// starts with.
func FuzzParseNetworks(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "127.0.0.1,::1", "::ffff:1.2.3.4/128", ",,", "1.2.3.4/0", "a/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, list string) {
		nets, err := ParseNetworks(list)
		if err != nil {
			if !strings.HasPrefix(err.Error(), `network "`) {
				t.Fatalf("error %q does not name the entry", err)
			}
			return
		}
		var entries []string
		for _, e := range strings.Split(list, ",") {
			if e = strings.TrimSpace(e); e != "" {
				entries = append(entries, e)
			}
		}
		if len(entries) != len(nets) {
			t.Fatalf("%q: %d networks from %d entries", list, len(nets), len(entries))
		}
		for i, p := range nets {
			if p != p.Masked() || p.Addr().Is4In6() {
				t.Fatalf("%q: network %v not masked or still mapped", list, p)
			}
			addr, _, _ := strings.Cut(entries[i], "/")
			a, err := netip.ParseAddr(addr)
			if err != nil {
				t.Fatalf("%q: entry %q accepted but its address does not parse", list, entries[i])
			}
			if !p.Contains(a.Unmap()) {
				t.Fatalf("%q: network %v does not contain %v", list, p, a)
			}
		}
	})
}

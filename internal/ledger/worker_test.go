package ledger

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// TestCheckWorkerRule: the names the ledgers cannot store, or that are
// too long, are refused with an error naming the rule and the value; the
// ordinary ones pass.
func TestCheckWorkerRule(t *testing.T) {
	for _, name := range []string{
		"bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.rig1",
		"bc1p5d7rjq7g6rdk2yhzks9smlaqtedr4dekq08ge8ztwac72sfr9rusxg3297", // P2TR, 62 characters
		"miner", "ünïcødé.rig", "a b", strings.Repeat("x", MaxWorkerLen),
	} {
		if err := CheckWorker(name); err != nil {
			t.Errorf("CheckWorker(%q) = %v, want nil", name, err)
		}
	}
	for _, c := range []struct{ name, want string }{
		{"", "worker name is empty"},
		{"evil\x00", `worker name "evil\x00" has control character U+0000 at byte 4`},
		{"a\tb", `worker name "a\tb" has control character U+0009 at byte 1`},
		{"a\x7f", `worker name "a\x7f" has control character U+007F at byte 1`},
		{"a\u0085", `worker name "a\u0085" has control character U+0085 at byte 1`},
		{"bad\xff", `worker name "bad\xff" is not valid UTF-8`},
		{strings.Repeat("x", MaxWorkerLen+1), "is 129 bytes: at most 128"},
	} {
		err := CheckWorker(c.name)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("CheckWorker(%q) = %v, want an error with %q", c.name, err, c.want)
		}
	}
}

// TestPrintableQuotesOnlyUnprintable: a good label is kept as it is; a
// bad one becomes printable ASCII that still says what it was.
func TestPrintableQuotesOnlyUnprintable(t *testing.T) {
	for in, want := range map[string]string{
		"addr":     "addr",
		"ünï":      "ünï",
		"evil\x00": `"evil\x00"`,
		"bad\xff":  `"bad\xff"`,
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzCheckWorker: a name CheckWorker accepts is storable text (valid
// UTF-8, no NUL, no control character, within the length), and Printable
// always returns such text.
func FuzzCheckWorker(f *testing.F) {
	for _, s := range []string{"", "a.b", "evil\x00", "\xff", "\u0085", strings.Repeat("é", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if CheckWorker(name) == nil {
			if name == "" || len(name) > MaxWorkerLen || !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl) {
				t.Fatalf("CheckWorker accepted %q", name)
			}
		}
		p := Printable(name)
		if !utf8.ValidString(p) || strings.ContainsFunc(p, unicode.IsControl) {
			t.Fatalf("Printable(%q) = %q: not printable", name, p)
		}
	})
}

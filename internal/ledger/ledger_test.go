package ledger

import "testing"

func TestAccountOf(t *testing.T) {
	for worker, want := range map[string]string{
		"bc1qaddr.rig1":   "bc1qaddr",
		"bc1qaddr":        "bc1qaddr",
		"addr.rig.extra":  "addr",
		".rig":            "",
		"":                "",
		"alice":           "alice",
		"alice.":          "alice",
		"tb1q.x.y.z.w.v.": "tb1q",
	} {
		if got := AccountOf(worker); got != want {
			t.Errorf("AccountOf(%q) = %q, want %q", worker, got, want)
		}
	}
}

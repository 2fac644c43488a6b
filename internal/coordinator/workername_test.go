package coordinator_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/stratum"
	"github.com/powcoord/powcoord/internal/sv2"
)

// unstorableNames are worker names no ledger can store or print, with
// the part of the error that names the rule.
var unstorableNames = []struct{ name, rule string }{
	{"evil\x00", `"evil\x00" has control character U+0000`},
	{"tab\there", `has control character U+0009`},
	{"c1\u0085", `has control character U+0085`},
	{strings.Repeat("w", 129), "is 129 bytes: at most 128"},
}

// TestAuthorizeRefusesUnstorableWorkerNames: mining.authorize with a NUL,
// a control character or an over-long name is answered false with error
// 24 naming the rule and the name; the name gets no accounting, and the
// same connection can still authorize a good name and get work.
func TestAuthorizeRefusesUnstorableWorkerNames(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.dial()
	c.subscribe()
	for _, n := range unstorableNames {
		m := c.call("mining.authorize", []string{n.name, "x"})
		var e stratum.Error
		if string(m.Result) != "false" || m.Error == nil || json.Unmarshal(m.Error, &e) != nil {
			t.Fatalf("authorize %q: result %s, error %s: want false with an error", n.name, m.Result, m.Error)
		}
		if e.Code != stratum.CodeUnauthorized || !strings.Contains(e.Message, n.rule) || !strings.HasPrefix(e.Message, "mining.authorize: worker name ") {
			t.Fatalf("authorize %q: error %d %q, want %d naming %q", n.name, e.Code, e.Message, stratum.CodeUnauthorized, n.rule)
		}
	}
	// Invalid UTF-8 cannot travel in JSON (it decodes as U+FFFD), so
	// only the rule above reaches the coordinator; a good name still works.
	c.authorize("good.rig")
	for c.lastJob == nil {
		c.next()
	}
	ws := h.coord.Status().Workers
	if len(ws) != 1 || ws[0].Name != "good.rig" || ws[0].Sessions != 1 {
		t.Fatalf("workers %+v, want only good.rig with one session", ws)
	}
}

// TestSV2OpenRefusesUnstorableUserIdentity: a standard or extended
// channel whose user identity is no worker name is refused with
// OpenMiningChannel.Error "invalid-user-identity"; the connection stays
// usable and the name gets no accounting.
func TestSV2OpenRefusesUnstorableUserIdentity(t *testing.T) {
	h := newV2Harness(t, harnessOpts{})
	c, err := h.dialV2(sv2.XOnly(h.auth))
	if err != nil {
		t.Fatal(err)
	}
	c.send(&sv2.SetupConnection{Protocol: 0, MinVersion: 2, MaxVersion: 2, Flags: 1, Vendor: "test"})
	if _, ok := c.next().(*sv2.SetupConnectionSuccess); !ok {
		t.Fatal("no SetupConnection.Success")
	}
	var max sv2.U256
	for i := range max {
		max[i] = 0xff
	}
	names := []string{"bad\xff.utf8"}
	for _, n := range unstorableNames {
		names = append(names, n.name)
	}
	req := uint32(10)
	for _, name := range names {
		for _, extended := range []bool{false, true} {
			req++
			if extended {
				c.send(&sv2.OpenExtendedMiningChannel{RequestID: req, UserIdentity: name + ":pw", MaxTarget: max, MinExtranonceSize: 4})
			} else {
				c.send(&sv2.OpenStandardMiningChannel{RequestID: req, UserIdentity: name, MaxTarget: max})
			}
			m, ok := c.next().(*sv2.OpenMiningChannelError)
			if !ok || m.RequestID != req || m.ErrorCode != coordinator.SV2ErrInvalidUserIdentity {
				t.Fatalf("open %q (extended %v): %+v, want OpenMiningChannel.Error %q for request %d", name, extended, m, coordinator.SV2ErrInvalidUserIdentity, req)
			}
		}
	}
	c.open("good.v2", true)
	c.waitActive()
	ws := h.coord.Status().Workers
	if len(ws) != 1 || ws[0].Name != "good.v2" || ws[0].Sessions != 1 {
		t.Fatalf("workers %+v, want only good.v2 with one channel", ws)
	}
}

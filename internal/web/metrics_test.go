package web_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/coordinator"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestMetricsCountSubmittedShares submits a known mix of valid and
// invalid shares over raw Stratum and checks /metrics, parsed with the
// Prometheus text parser, and /api/status against it.
func TestMetricsCountSubmittedShares(t *testing.T) {
	const shareDiff = 1e-6 // ~4,300 hashes a share
	p := startPool(t, 1e3, shareDiff, time.Hour)
	const user = "metrics.rig"
	m := dialMiner(t, p.stratum, user)
	if m.diff != shareDiff {
		t.Fatalf("pool sent difficulty %v, want %v", m.diff, shareDiff)
	}

	const valid = 5
	var first share
	for i := range valid {
		sh := m.find(en2(m, byte(i+1)), 0, true)
		if i == 0 {
			first = sh
		}
		if _, e := m.callErr("mining.submit", m.params(user, sh)); e != nil {
			t.Fatalf("valid share %d (nonce %d): %v", i, sh.nonce, e)
		}
	}
	expectReject := func(name string, code int, params any) {
		t.Helper()
		res, e := m.callErr("mining.submit", params)
		if e == nil || e.Code != code {
			t.Fatalf("%s: result %s error %v, want code %d", name, res, e, code)
		}
	}
	expectReject("duplicate", 22, m.params(user, first))
	for i := range 2 {
		low := m.find(en2(m, 100), uint32(i*1000), false)
		expectReject("low difficulty", 23, m.params(user, low))
	}
	bad := m.params(user, first)
	bad[1] = "ffffffffff"
	expectReject("unknown job", 21, bad)
	expectReject("malformed", 20, []string{user, m.job.JobID})

	want := map[string]float64{
		"accepted":                      valid,
		coordinator.ReasonDuplicate:     1,
		coordinator.ReasonLowDifficulty: 2,
		coordinator.ReasonJobNotFound:   1,
		coordinator.ReasonMalformed:     1,
	}
	fams := scrape(t, p.http.URL+"/metrics")
	shares := fams["powcoord_shares_total"]
	if shares == nil {
		t.Fatal("/metrics has no powcoord_shares_total")
	}
	got := map[string]float64{}
	for _, mt := range shares.GetMetric() {
		got[label(mt, "result")] = mt.GetCounter().GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("powcoord_shares_total{result=%q} = %v, want %v", k, got[k], v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok && v != 0 {
			t.Errorf("powcoord_shares_total{result=%q} = %v, want none", k, v)
		}
	}
	if v := gauge(fams, "powcoord_sessions"); v != 1 {
		t.Errorf("powcoord_sessions = %v, want 1", v)
	}
	if f := fams["powcoord_share_work_total"]; f == nil || len(f.Metric) != 1 {
		t.Error("/metrics has no powcoord_share_work_total")
	} else if v := f.Metric[0].GetCounter().GetValue(); v < valid*shareDiff*0.999999 || v > valid*shareDiff*1.000001 {
		t.Errorf("powcoord_share_work_total = %v, want %v (%d shares at difficulty %v)", v, valid*shareDiff, valid, shareDiff)
	}
	if f := fams["powcoord_share_seconds"]; f == nil || f.Metric[0].GetHistogram().GetSampleCount() != valid {
		t.Errorf("powcoord_share_seconds: want %d observations, got %v", valid, f)
	}

	resp, err := http.Get(p.http.URL + "/api/status")
	mustf(t, err, "GET /api/status")
	defer resp.Body.Close()
	var st coordinator.Status
	mustf(t, json.NewDecoder(resp.Body).Decode(&st), "decoding /api/status")
	if len(st.Workers) != 1 || st.Workers[0].Name != user {
		t.Fatalf("status workers = %+v, want just %q", st.Workers, user)
	}
	w := st.Workers[0]
	if w.Accepted != valid || w.RejectedTotal != 5 || w.Rejected[coordinator.ReasonLowDifficulty] != 2 {
		t.Errorf("worker %s: accepted %d rejected %d %v, want %d accepted, 5 rejected (2 low-difficulty)", w.Name, w.Accepted, w.RejectedTotal, w.Rejected, valid)
	}
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	mustf(t, err, "GET %s", url)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	mustf(t, err, "parsing %s", url)
	return fams
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func gauge(fams map[string]*dto.MetricFamily, name string) float64 {
	f := fams[name]
	if f == nil || len(f.Metric) == 0 {
		return -1
	}
	return f.Metric[0].GetGauge().GetValue()
}

package web_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/web"
)

// httpDo sends one request and returns the status and body.
func httpDo(t *testing.T, method, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// banLoopback gets 127.0.0.1 banned: one connection, two invalid shares
// (the rule of the pool: 2 shares, one connection).
func banLoopback(t *testing.T, p *pool) {
	t.Helper()
	m := dialMiner(t, p.stratum, "mallory")
	bad := `{"id":7,"method":"mining.submit","params":["mallory","` + m.job.JobID + `","0000000z","` + m.job.NTime + `","00000000"]}` + "\n"
	for range 2 {
		if _, err := io.WriteString(m.conn, bad); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := io.ReadAll(m.r); err != nil { // until the pool closes it
		t.Fatal(err)
	}
	if !p.coord.Banned("127.0.0.1") {
		t.Fatal("127.0.0.1 not banned")
	}
}

// TestBansAPI: GET /api/bans lists the ban with its reason and counts;
// DELETE /api/bans/{ip} is refused without the admin token or with a
// wrong one, lifts the ban with it, then answers 404; a malformed address
// is a 400 naming it; on the admin listener's routes no token is needed.
func TestBansAPI(t *testing.T) {
	p := startPool(t, 1e6, 1e-7, 0, func(c *coordinator.Config) { c.BanMinShares, c.BanIPAfter = 2, 1 })
	p.web.HandleBans(web.BanAccess{Token: "s3cret"})
	banLoopback(t, p)

	code, body := httpDo(t, "GET", p.http.URL+"/api/bans", "")
	var bans []coordinator.Ban
	if err := json.Unmarshal([]byte(body), &bans); code != 200 || err != nil {
		t.Fatalf("GET /api/bans: %d %s (%v)", code, body, err)
	}
	if len(bans) != 1 || bans[0].IP != "127.0.0.1" || bans[0].Connections != 1 || bans[0].Shares != 2 || bans[0].Rejected != 2 ||
		len(bans[0].Workers) != 1 || bans[0].Workers[0] != "mallory" || !strings.Contains(bans[0].Reason, "2 of 2") {
		t.Fatalf("GET /api/bans: %s", body)
	}
	for _, tok := range []string{"", "wrong"} {
		if code, body := httpDo(t, "DELETE", p.http.URL+"/api/bans/127.0.0.1", tok); code != http.StatusForbidden || !strings.Contains(body, "--admin-token") {
			t.Fatalf("DELETE with token %q: %d %s", tok, code, body)
		}
	}
	if !p.coord.Banned("127.0.0.1") {
		t.Fatal("ban lifted without the token")
	}
	if code, body := httpDo(t, "DELETE", p.http.URL+"/api/bans/not-an-ip", "s3cret"); code != http.StatusBadRequest || !strings.Contains(body, `"not-an-ip"`) {
		t.Fatalf("DELETE of a malformed address: %d %s", code, body)
	}
	if code, body := httpDo(t, "DELETE", p.http.URL+"/api/bans/127.0.0.1", "s3cret"); code != http.StatusOK || !strings.Contains(body, `"127.0.0.1"`) {
		t.Fatalf("DELETE with the token: %d %s", code, body)
	}
	if p.coord.Banned("127.0.0.1") {
		t.Fatal("still banned after DELETE")
	}
	if code, body := httpDo(t, "DELETE", p.http.URL+"/api/bans/127.0.0.1", "s3cret"); code != http.StatusNotFound {
		t.Fatalf("second DELETE: %d %s", code, body)
	}
	if code, body := httpDo(t, "GET", p.http.URL+"/api/bans", ""); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Fatalf("GET /api/bans after the lift: %d %s", code, body)
	}

	// The admin listener's routes: no token needed.
	banLoopback(t, p)
	mux := http.NewServeMux()
	web.BanRoutes(mux, func() web.BanList { return p.coord }, web.BanAccess{Admin: true}, nil)
	admin := httptest.NewServer(mux)
	defer admin.Close()
	if code, body := httpDo(t, "DELETE", admin.URL+"/api/bans/::ffff:127.0.0.1", ""); code != http.StatusOK || !strings.Contains(body, `"127.0.0.1"`) {
		t.Fatalf("DELETE on the admin listener: %d %s", code, body)
	}
	// No coordinator (a front-end between leases): 503.
	none := http.NewServeMux()
	web.BanRoutes(none, func() web.BanList { return nil }, web.BanAccess{Admin: true}, nil)
	rec := httptest.NewRecorder()
	none.ServeHTTP(rec, httptest.NewRequest("GET", "/api/bans", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("GET /api/bans without a coordinator: %d", rec.Code)
	}
}

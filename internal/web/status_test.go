package web_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestStatusPagesWorkers: GET /api/status lists the workers in name
// order, ?offset= and ?limit= page them, workers_total counts them all;
// a bad parameter is a 400 naming it and its value. Without parameters
// the answer has its old shape (time, sessions, workers, ...).
func TestStatusPagesWorkers(t *testing.T) {
	p := startPool(t, 1e6, 1e-7, time.Hour)
	for i := range 4 {
		dialMiner(t, p.stratum, fmt.Sprintf("w%d", 3-i))
	}
	get := func(q string) (int, string) {
		t.Helper()
		resp, err := http.Get(p.http.URL + "/api/status" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	type page struct {
		Sessions int `json:"sessions"`
		Workers  []struct {
			Name string `json:"name"`
		} `json:"workers"`
		Total  *int `json:"workers_total"`
		Offset *int `json:"workers_offset"`
	}
	names := func(body string) (page, string) {
		t.Helper()
		var pg page
		if err := json.Unmarshal([]byte(body), &pg); err != nil || pg.Total == nil || pg.Offset == nil {
			t.Fatalf("status %s: %v", body, err)
		}
		var n []string
		for _, w := range pg.Workers {
			n = append(n, w.Name)
		}
		return pg, strings.Join(n, ",")
	}
	code, body := get("")
	if pg, n := names(body); code != 200 || n != "w0,w1,w2,w3" || *pg.Total != 4 || *pg.Offset != 0 || pg.Sessions != 4 {
		t.Fatalf("GET /api/status: %d, workers %q, total %d, sessions %d", code, n, *pg.Total, pg.Sessions)
	}
	code, body = get("?offset=1&limit=2")
	if pg, n := names(body); code != 200 || n != "w1,w2" || *pg.Total != 4 || *pg.Offset != 1 {
		t.Fatalf("GET /api/status?offset=1&limit=2: %d, workers %q, total %d, offset %d", code, n, *pg.Total, *pg.Offset)
	}
	for q, want := range map[string]string{
		"?limit=0":     `limit: "0" is not a number of workers from 1 to 10000`,
		"?limit=10001": `limit: "10001" is not a number of workers from 1 to 10000`,
		"?offset=-1":   `offset: "-1" is not a non-negative integer`,
		"?offset=x":    `offset: "x" is not a non-negative integer`,
	} {
		if code, body := get(q); code != http.StatusBadRequest || strings.TrimSpace(body) != want {
			t.Errorf("GET /api/status%s: %d %q, want 400 %q", q, code, body, want)
		}
	}
}

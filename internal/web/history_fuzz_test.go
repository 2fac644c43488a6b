package web_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/web"
)

// FuzzWorkerHistoryRequest: whatever the path after /api/workers/ and
// its query (name, ?minutes=, ?scope=), GET /api/workers/{name} on a
// real store answers 200 with JSON, 404, or a 400 that says which
// parameter was wrong; never a 5xx or a panic. The seed corpus is in
// testdata/fuzz/FuzzWorkerHistoryRequest.
func FuzzWorkerHistoryRequest(f *testing.F) {
	st, err := store.Open(filepath.Join(f.TempDir(), "powcoord.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	now := time.Now()
	if err := st.RecordShares(context.Background(), []store.Share{
		{Time: now.Add(-2 * time.Minute), Worker: "alice.rig1", Difficulty: 1, Achieved: 1},
		{Time: now.Add(-time.Hour), Worker: "bob", Difficulty: 2, Achieved: 2, Nonce: 1},
	}); err != nil {
		f.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /api/workers/{name...}", web.WorkerHistoryHandler(st, quietLogger()))
	f.Add("alice.rig1?minutes=60")
	f.Add("alice?scope=account")
	f.Fuzz(func(t *testing.T, rest string) {
		req, err := http.NewRequest("GET", "http://x/api/workers/"+rest, nil)
		if err != nil {
			return // not a URL: no request reaches the handler
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		body, _ := io.ReadAll(rec.Body)
		switch rec.Code {
		case http.StatusOK:
			if !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
				t.Fatalf("GET /api/workers/%s: 200 with %q", rest, rec.Header().Get("Content-Type"))
			}
		case http.StatusNotFound, http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		case http.StatusBadRequest:
			if s := string(body); !strings.HasPrefix(s, "minutes: ") && !strings.HasPrefix(s, "scope: ") && !strings.HasPrefix(s, "GET /api/workers/{name}: ") {
				t.Fatalf("GET /api/workers/%s: 400 %q names no parameter", rest, s)
			}
		default:
			t.Fatalf("GET /api/workers/%s: %d %s", rest, rec.Code, body)
		}
	})
}

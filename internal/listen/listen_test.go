package listen

import (
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/powcoord/powcoord/internal/coordinator"
)

// TestValidateNamesFlagAndValue: every refusal names the flag and the
// value that was wrong.
func TestValidateNamesFlagAndValue(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--stratum-tls", "127.0.0.1:0"}, `--stratum-tls "127.0.0.1:0" needs --tls-cert`},
		{[]string{"--tls-cert", "c.pem"}, "only used with --stratum-tls"},
		{[]string{"--min-difficulty", "-1"}, "--min-difficulty -1"},
		{[]string{"--max-conns", "-2"}, "--max-conns -2"},
		{[]string{"--reconnect-addr", "nohost"}, `--reconnect-addr "nohost"`},
		{[]string{"--reconnect-wait", "1500ms"}, "--reconnect-wait 1.5s"},
		{[]string{"--idle-timeout", "-1s"}, "--idle-timeout -1s"},
	} {
		var f Flags
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		f.Register(fs, "127.0.0.1:0", false)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		err := f.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
	// A version mask that is not hex is refused by the flag itself.
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var f Flags
	f.Register(fs, "", false)
	if err := fs.Parse([]string{"--version-mask", "zz"}); err == nil || !strings.Contains(err.Error(), `"zz"`) {
		t.Errorf("--version-mask zz: %v", err)
	}
}

// TestApplyDefaults: the flags given, and the registered defaults, reach
// the coordinator's config.
func TestApplyDefaults(t *testing.T) {
	var f Flags
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	f.Register(fs, "127.0.0.1:3333", false)
	if err := fs.Parse([]string{"--version-mask", "1fffe000", "--allow-users", " a, b.x ,", "--auth", "allowlist"}); err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	var cfg coordinator.Config
	f.Apply(&cfg)
	if cfg.VersionMask != 0x1fffe000 || cfg.AuthMode != "allowlist" ||
		len(cfg.AllowList) != 2 || cfg.AllowList[0] != "a" || cfg.AllowList[1] != "b.x" || cfg.MaxLineBytes != 4096 {
		t.Fatalf("applied %+v", cfg)
	}
}

// TestOpenV1ServesV2Key: --stratum alone loads (here: creates) the V2
// authority key, and its stratum2+tcp URL names the --stratum address;
// a second Open reads the same key back.
func TestOpenV1ServesV2Key(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f := Flags{V1: "127.0.0.1:0"}
	s, err := f.Open(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Stat(filepath.Join(dir, "sv2-authority.key")); err != nil {
		t.Fatalf("no authority key with --stratum alone: %v", err)
	}
	prefix := "stratum2+tcp://" + s.V1.Addr().String() + "/"
	if !strings.HasPrefix(s.V1URL, prefix) || s.SV2URL != s.V1URL || s.V2 != nil {
		t.Fatalf("V1URL %q SV2URL %q V2 %v, want %s<key> twice and no V2 listener", s.V1URL, s.SV2URL, s.V2, prefix)
	}
	if lns := s.Serve(); len(lns) != 1 {
		t.Fatalf("%d listeners served, want 1", len(lns))
	}
	again, err := f.Open(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	key := func(u string) string { return u[strings.LastIndex(u, "/"):] }
	if key(again.V1URL) != key(s.V1URL) {
		t.Fatalf("second start's key %s, first %s", key(again.V1URL), key(s.V1URL))
	}
}

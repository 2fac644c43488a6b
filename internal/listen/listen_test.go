package listen

import (
	"flag"
	"io"
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

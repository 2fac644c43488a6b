package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// configFlags is a flag set shaped like the real commands: scalars of
// every kind and a repeatable list.
type configFlagSet struct {
	fs      *flag.FlagSet
	config  *string
	http    *string
	agents  *int
	diff    *float64
	every   *time.Duration
	verbose *bool
	urls    urlList
}

func newConfigFlagSet() *configFlagSet {
	c := &configFlagSet{fs: flag.NewFlagSet("demo", flag.ContinueOnError)}
	c.fs.SetOutput(io.Discard)
	c.config = addConfigFlag(c.fs)
	c.http = c.fs.String("http", "127.0.0.1:8080", "")
	c.agents = c.fs.Int("agents", 3, "")
	c.diff = c.fs.Float64("share-difficulty", 0.001, "")
	c.every = c.fs.Duration("block-time", 10*time.Second, "")
	c.verbose = c.fs.Bool("verbose", false, "")
	c.fs.Var(&c.urls, "url", "")
	return c
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "powcoord.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (c *configFlagSet) parse(t *testing.T, args ...string) error {
	t.Helper()
	if err := c.fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return applyConfig(c.fs, *c.config)
}

func TestConfigSetsEveryKind(t *testing.T) {
	p := writeConfig(t, `
http = "127.0.0.1:9999"
agents = 7
share-difficulty = 2.5e-4
block_time = "3s"        # underscore stands for the dash
verbose = true
url = ["stratum+tcp://a:1", "stratum+tcp://b:2"]
`)
	c := newConfigFlagSet()
	if err := c.parse(t, "--config", p); err != nil {
		t.Fatal(err)
	}
	if *c.http != "127.0.0.1:9999" || *c.agents != 7 || *c.diff != 2.5e-4 || *c.every != 3*time.Second || !*c.verbose {
		t.Errorf("got http=%q agents=%d diff=%v block-time=%v verbose=%v", *c.http, *c.agents, *c.diff, *c.every, *c.verbose)
	}
	if got := strings.Join(c.urls, " "); got != "stratum+tcp://a:1 stratum+tcp://b:2" {
		t.Errorf("url = %q, want both pools in order", got)
	}
}

func TestConfigCommandLineWins(t *testing.T) {
	p := writeConfig(t, `agents = 7
http = "127.0.0.1:9999"
url = ["stratum+tcp://file:1"]
`)
	c := newConfigFlagSet()
	if err := c.parse(t, "--agents", "2", "--url", "stratum+tcp://cli:1", "--config", p); err != nil {
		t.Fatal(err)
	}
	if *c.agents != 2 {
		t.Errorf("agents = %d, want 2 from the command line", *c.agents)
	}
	if *c.http != "127.0.0.1:9999" {
		t.Errorf("http = %q, want the file's value", *c.http)
	}
	if got := strings.Join(c.urls, " "); got != "stratum+tcp://cli:1" {
		t.Errorf("url = %q, want only the command line's pool", got)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{`agnets = 3`, `unknown key "agnets"`},
		{`config = "other.toml"`, `unknown key "config"`},
		{"[demo]\nagents = 3", `unknown key "demo"`},
		{`agents = "many"`, `key "agents": invalid value "many"`},
		{`agents = [1, 2]`, `key "agents": an array is given`},
		{`block-time = 5`, `key "block-time": invalid value "5"`},
		{`url = [{a = 1}]`, `key "url": element 0: a table is given`},
		{"agents = 1\nshare_difficulty = 1\nshare-difficulty = 2", `both set --share-difficulty`},
		{`agents = `, `toml`},
	} {
		c := newConfigFlagSet()
		err := c.parse(t, "--config", writeConfig(t, tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config %q: err = %v, want it to contain %q", tc.text, err, tc.want)
		}
	}
}

func TestConfigMissingFile(t *testing.T) {
	c := newConfigFlagSet()
	missing := filepath.Join(t.TempDir(), "nope.toml")
	err := c.parse(t, "--config", missing)
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("err = %v, want it to name %q", err, missing)
	}
	c = newConfigFlagSet()
	if err := c.parse(t); err != nil || *c.agents != 3 {
		t.Fatalf("no --config: err=%v agents=%d, want defaults untouched", err, *c.agents)
	}
}

// TestConfigInEveryCommand checks that each subcommand reads --config and
// names an unknown key.
func TestConfigInEveryCommand(t *testing.T) {
	p := writeConfig(t, "not-a-flag = 1\n")
	for _, cmd := range []string{"demo", "coordinator", "agent", "bench"} {
		err := run(t.Context(), []string{cmd, "--config", p}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), `unknown key "not-a-flag"`) {
			t.Errorf("%s --config: err = %v, want the unknown key named", cmd, err)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"
)

func TestVersionCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if !strings.HasPrefix(got, "powcoord ") || !strings.Contains(got, runtime.Version()) || !strings.HasSuffix(got, ")\n") {
		t.Errorf("version output %q: want \"powcoord <version> (%s ...)\"", got, runtime.Version())
	}
	if err := run(context.Background(), []string{"version", "extra"}, &out, &errb); err == nil || !strings.Contains(err.Error(), `"extra"`) {
		t.Errorf("version extra: err = %v, want it to name the argument", err)
	}
}

// TestVersionStampedByLdflags: what scripts/release.sh stamps with
// -ldflags -X wins over the build information, and the commit is printed
// whole (a release names the exact commit).
func TestVersionStampedByLdflags(t *testing.T) {
	defer func(v, c string) { stampedVersion, stampedCommit = v, c }(stampedVersion, stampedCommit)
	stampedVersion = "v1.2.3"
	stampedCommit = "0123456789abcdef0123456789abcdef01234567"
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	want := "powcoord v1.2.3 (" + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH +
		", commit 0123456789abcdef0123456789abcdef01234567)\n"
	if got := out.String(); got != want {
		t.Errorf("version output %q, want %q", got, want)
	}
}

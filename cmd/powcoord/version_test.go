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

package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
)

// The simulation model (plans, rates, the summary) is tested in
// internal/sim; these tests cover the demo's wiring.

func TestDemoFlagErrorsNameTheValue(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--agent-rates", "1x,fast"}, `--agent-rates: entry 2 "fast"`},
		{[]string{"--agents", "2", "--agent-rates", "1x"}, `--agents 2 but --agent-rates "1x" has 1 entries`},
		{[]string{"--agent-schedule", "9:10s"}, `--agent-schedule: entry "9:10s"`},
		{[]string{"--base-rate", "fast"}, `invalid value "fast" for flag -base-rate: want 0 or a positive rate like 200k`},
		{[]string{"--agent-threads", "-1"}, `--agent-threads -1: must be 0 or more`},
		{[]string{"--duration", "-1s"}, `--duration -1s: must be 0 (until Ctrl-C) or positive`},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), append([]string{"demo", "--http", ""}, tc.args...), &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("demo %v: err = %v, want it to contain %q", tc.args, err, tc.want)
		}
	}
}

// TestDemoPrintsSummary runs the whole demo for half a second (no
// dashboard) and checks that it prints the summary with every agent and a
// difficulty read from the chain.
func TestDemoPrintsSummary(t *testing.T) {
	var out, logs bytes.Buffer
	err := run(t.Context(), []string{"demo", "--http", "", "--duration", "500ms", "--agent-rates", "1x,2x", "--base-rate", "50k",
		"--block-difficulty", "1e-4", "--share-difficulty", "1e-4", "--log-level", "warn"}, &out, &logs)
	if err != nil {
		t.Fatalf("demo: %v\nlogs:\n%s", err, logs.String())
	}
	s := out.String()
	for _, re := range []string{
		`(?m)^simulation summary: \d+s, \d+ blocks, mean interval [0-9.]+s \(target 10s\), difficulty 0\.0001 -> [0-9.e-]+$`,
		`(?m)^agent1 +1x +[0-9.]+ [kM]?H/s`,
		`(?m)^agent2 +2x +[0-9.]+ [kM]?H/s`,
		`(?m)^powcoord demo: stopped$`,
	} {
		if !regexp.MustCompile(re).MatchString(s) {
			t.Errorf("demo output does not match %s:\n%s", re, s)
		}
	}
	if strings.Contains(s, "-> 0\n") {
		t.Errorf("summary reports difficulty 0 at the end (never read from the chain):\n%s", s)
	}
}

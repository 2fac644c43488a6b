package web_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves goroutines behind (the
// sampler, an event stream, a Stratum session).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

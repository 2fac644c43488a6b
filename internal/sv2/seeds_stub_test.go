package sv2

import "testing"

func writeTransportSeeds(t *testing.T, write func(target, name string, args ...[]byte)) {}

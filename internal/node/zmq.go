package node

import (
	"context"
	"fmt"
)

// zmqLoop would follow Bitcoin Core's zmqpubhashblock; not built yet.
func (s *Source) zmqLoop(endpoint string) (func(context.Context), error) {
	return nil, fmt.Errorf("--node-zmq %q: ZMQ is not supported yet; long-poll and polling follow the tip", endpoint)
}

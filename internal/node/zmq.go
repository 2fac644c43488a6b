package node

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/url"

	"github.com/go-zeromq/zmq4"
)

// zmqTopic is Bitcoin Core's new-block notification (zmqpubhashblock):
// frames "hashblock", the 32-byte block hash, a 4-byte sequence number.
const zmqTopic = "hashblock"

// zmqLoop checks endpoint and returns a loop that subscribes to Bitcoin
// Core's hashblock notifications there and asks for a fresh template on
// each. It redials after errors; polling stays on, since a ZMQ
// subscription can die silently.
func (s *Source) zmqLoop(endpoint string) (func(context.Context), error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "tcp" || u.Host == "" || u.Port() == "" {
		return nil, fmt.Errorf("--node-zmq %q: want tcp://host:port (Bitcoin Core's zmqpubhashblock)", endpoint)
	}
	return func(ctx context.Context) {
		for ctx.Err() == nil {
			err := s.zmqSession(ctx, endpoint)
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("zmq subscription ended; polling continues", "endpoint", endpoint, "err", err)
			if !sleepCtx(ctx, s.cfg.PollInterval) {
				return
			}
		}
	}, nil
}

// zmqSession subscribes once and reads notifications until an error.
func (s *Source) zmqSession(ctx context.Context, endpoint string) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sub := zmq4.NewSub(sctx)
	defer sub.Close()
	if err := sub.Dial(endpoint); err != nil {
		return err
	}
	if err := sub.SetOption(zmq4.OptionSubscribe, zmqTopic); err != nil {
		return err
	}
	s.log.Info("zmq subscribed", "endpoint", endpoint, "topic", zmqTopic)
	for {
		msg, err := sub.Recv()
		if err != nil {
			return err
		}
		if len(msg.Frames) < 2 || string(msg.Frames[0]) != zmqTopic || len(msg.Frames[1]) != 32 {
			continue
		}
		var seq uint32
		if len(msg.Frames) > 2 && len(msg.Frames[2]) == 4 {
			seq = binary.LittleEndian.Uint32(msg.Frames[2])
		}
		s.log.Debug("zmq hashblock", "hash", fmt.Sprintf("%x", msg.Frames[1]), "seq", seq)
		s.requestFetch()
	}
}

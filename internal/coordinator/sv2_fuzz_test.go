package coordinator_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/simchain"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/sv2"
)

// FuzzSV2Session sends fuzzer-chosen frames, after a real handshake and
// optionally a valid SetupConnection and channel, to a coordinator serving
// V2 on 127.0.0.1: whatever arrives, the coordinator must not crash, must
// answer or close, and must go on serving (checked at the end of each
// input by the same connection's close and the next input's handshake).
//
// Input: byte 0 bit 0 sends SetupConnection first, bit 1 also opens a
// standard channel; then records of [ext flags][msg type][len][payload].
func FuzzSV2Session(f *testing.F) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.Open(filepath.Join(f.TempDir(), "powcoord.db"))
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	chain, err := simchain.Open(ctx, simchain.Config{Store: st, BlockTime: 10 * time.Second, StartDifficulty: 1e6, Logger: log})
	if err != nil {
		f.Fatal(err)
	}
	coord, err := coordinator.New(coordinator.Config{Source: chain, Store: st, ShareDifficulty: 1e-7, SharesPerMinute: -1, BanMinShares: -1, Logger: log})
	if err != nil {
		f.Fatal(err)
	}
	auth, _ := btcec.NewPrivateKey()
	srv, _ := sv2.NewServer(sv2.ServerConfig{Authority: auth})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- coord.Serve(ctx, coordinator.WithSV2(ln, srv)) }()
	f.Cleanup(func() { cancel(); <-done; st.Close() })
	addr := ln.Addr().String()

	submit := []byte{0x80, 0x1a, 24, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32}
	f.Add(append([]byte{3}, submit...))
	f.Add([]byte{1, 0x00, 0x10, 5, 1, 0, 0, 0, 0})                            // a short OpenStandardMiningChannel
	f.Add([]byte{3, 0x80, 0x16, 4, 1, 0, 0, 0, 0x80, 0x18, 5, 1, 0, 0, 0, 0}) // short UpdateChannel, CloseChannel
	f.Add([]byte{0, 0x00, 0x00, 0})                                           // an empty SetupConnection
	f.Add([]byte{3, 0x40, 0x01, 3, 1, 2, 3, 0x00, 0x50, 0})                   // an extension frame, then an unknown type
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(10 * time.Second))
		conn, err := sv2.ClientHandshake(raw, sv2.ClientConfig{Authority: sv2.XOnly(auth)})
		if err != nil {
			t.Fatalf("handshake (the coordinator must keep serving): %v", err)
		}
		var msgs []sv2.Message
		if data[0]&1 != 0 {
			msgs = append(msgs, &sv2.SetupConnection{MinVersion: 2, MaxVersion: 2})
		}
		if data[0]&3 == 3 {
			msgs = append(msgs, &sv2.OpenStandardMiningChannel{RequestID: 1, UserIdentity: "fuzz"})
		}
		if len(msgs) > 0 {
			conn.WriteMessages(msgs...)
		}
		rest := data[1:]
		for len(rest) >= 3 {
			ext := uint16(rest[0]&0xc0) << 8
			typ, n := rest[1], int(rest[2])
			rest = rest[3:]
			n = min(n, len(rest))
			if conn.WriteFrame(sv2.Header{ExtensionType: ext, MsgType: typ}, rest[:n]) != nil {
				break
			}
			rest = rest[n:]
		}
		raw.(*net.TCPConn).CloseWrite()
		// The coordinator closes the connection once it reads our EOF
		// (or earlier, on a frame it refuses).
		for {
			if _, _, err := conn.ReadFrame(); err != nil {
				var ne net.Error
				if asNetErr(err, &ne) && ne.Timeout() {
					t.Fatal("the coordinator neither answered nor closed within 10 s")
				}
				return
			}
		}
	})
}

func asNetErr(err error, ne *net.Error) bool {
	e, ok := err.(net.Error)
	if ok {
		*ne = e
	}
	return ok
}

//go:build !linux

package coordinator

import (
	"context"
	"log/slog"
)

// eventLoop is the Linux event loop (eventloop_linux.go); elsewhere every
// session has a goroutine of its own.
type eventLoop struct{}

// evState is a session's part of the event loop; never set here.
type evState struct{}

func newEventLoop(*slog.Logger) *eventLoop { return nil }

func (l *eventLoop) close() {}

func (l *eventLoop) add(context.Context, *session, func()) bool { return false }

func (ev *evState) wake(*session) {}

// writeNow is the Linux event loop's direct write; never reached here.
func (ev *evState) writeNow([]byte) (int, bool, error) { return 0, false, nil }

// blocking is the Linux event loop's reader accounting; never reached here.
func (ev *evState) blocking(int) {}

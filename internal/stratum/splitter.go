package stratum

import (
	"bytes"
	"fmt"
)

// LineSplitter cuts newline-terminated lines out of bytes handed to it a
// read at a time, by a caller that owns the read buffer (an event loop
// reading into a pooled buffer). It follows LineReader's rules: a line is
// returned without its "\n" and one "\r" before it, blank lines are
// skipped, and a line of more than Max bytes is an error wrapping
// ErrLineTooLong. Between reads it keeps only the unfinished part of a
// line, and nothing at all at a line boundary, so an idle connection
// holds no buffer.
type LineSplitter struct {
	max     int
	partial []byte // the start of a line the last read ended inside
}

// NewLineSplitter returns a splitter for lines of at most max bytes.
func NewLineSplitter(max int) LineSplitter { return LineSplitter{max: max} }

// Pending reports how many bytes of an unfinished line it holds.
func (l *LineSplitter) Pending() int { return len(l.partial) }

// Feed hands data, the bytes of one read, to the splitter and calls fn
// with each complete line in order; a line is valid only during the call.
// Feed stops early, returning false, when fn returns false. An over-long
// line returns an error; the stream is then out of step.
func (l *LineSplitter) Feed(data []byte, fn func(line []byte) bool) (bool, error) {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			if len(l.partial)+len(data) > l.max+1 { // +1: a "\r" may still end it
				return false, fmt.Errorf("%w: more than %d bytes without a newline", ErrLineTooLong, l.max)
			}
			l.partial = append(l.partial, data...)
			return true, nil
		}
		line := data[:i]
		data = data[i+1:]
		if len(l.partial) > 0 {
			l.partial = append(l.partial, line...)
			line = l.partial
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		whole := len(l.partial) > 0
		if len(line) > l.max {
			return false, fmt.Errorf("%w: %d bytes, limit %d", ErrLineTooLong, len(line), l.max)
		}
		if len(bytes.TrimSpace(line)) > 0 && !fn(line) {
			l.release(whole)
			return false, nil
		}
		l.release(whole)
	}
	return true, nil
}

// release forgets a finished partial line; a large one's buffer is let go.
func (l *LineSplitter) release(had bool) {
	if !had {
		return
	}
	if cap(l.partial) > 512 {
		l.partial = nil
		return
	}
	l.partial = l.partial[:0]
}

package stratum

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// LineReader reads newline-terminated lines of at most Max bytes. It keeps
// a small buffer per connection and grows a line only as far as it is long.
type LineReader struct {
	r    *bufio.Reader
	max  int
	line []byte
}

// NewLineReader returns a reader for lines of at most max bytes (the
// newline excluded), with a bufSize read buffer.
func NewLineReader(r io.Reader, max, bufSize int) *LineReader {
	return &LineReader{r: bufio.NewReaderSize(r, bufSize), max: max}
}

// ReadLine returns the next line without its "\n" (and one "\r" before it). The slice is
// valid until the next call. A line longer than the limit yields an error
// wrapping ErrLineTooLong; after it the stream is out of step and the
// caller should close it. Blank lines are skipped.
func (l *LineReader) ReadLine() ([]byte, error) {
	for {
		l.line = l.line[:0]
		for {
			chunk, err := l.r.ReadSlice('\n')
			l.line = append(l.line, chunk...)
			if len(l.line) > l.max+2 || (err == bufio.ErrBufferFull && len(l.line) > l.max) {
				return nil, fmt.Errorf("%w: more than %d bytes without a newline", ErrLineTooLong, l.max)
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if err != nil {
				if err == io.EOF && len(l.line) > 0 {
					return nil, io.ErrUnexpectedEOF
				}
				return nil, err
			}
			break
		}
		line := bytes.TrimSuffix(bytes.TrimSuffix(l.line, []byte("\n")), []byte("\r"))
		if len(line) > l.max {
			return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrLineTooLong, len(line), l.max)
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		return line, nil
	}
}

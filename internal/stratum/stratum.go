// Package stratum is the Stratum V1 wire format shared by the coordinator
// and the agent: newline-delimited JSON-RPC messages, the error codes pools
// use, and typed forms of mining.notify and mining.submit; Job (job.go)
// decodes a notify and rebuilds a share's header. docs/stratum-v1.md
// gives the methods and the byte order of every field.
package stratum

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Error codes of Stratum V1.
const (
	CodeOther         = 20 // other/unknown
	CodeJobNotFound   = 21 // job not found (stale)
	CodeDuplicate     = 22 // duplicate share
	CodeLowDifficulty = 23 // low difficulty share
	CodeUnauthorized  = 24 // unauthorized worker
	CodeNotSubscribed = 25 // not subscribed
)

// Error is a Stratum error, encoded as [code, "message", null].
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("stratum error %d: %s", e.Code, e.Message) }

// MarshalJSON encodes e as [code, "message", null].
func (e *Error) MarshalJSON() ([]byte, error) {
	return e.appendJSON(nil), nil
}

// UnmarshalJSON accepts the array form and, as some pools send it, an
// object with "code" and "message".
func (e *Error) UnmarshalJSON(b []byte) error {
	var arr []json.RawMessage
	if err := json.Unmarshal(b, &arr); err == nil {
		if len(arr) < 2 {
			return fmt.Errorf("stratum error %s: want [code, message, ...]", b)
		}
		if err := json.Unmarshal(arr[0], &e.Code); err != nil {
			return fmt.Errorf("stratum error code %s: %w", arr[0], err)
		}
		if err := json.Unmarshal(arr[1], &e.Message); err != nil {
			e.Message = string(arr[1])
		}
		return nil
	}
	var obj struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		return fmt.Errorf("stratum error %s: neither an array nor an object", b)
	}
	e.Code, e.Message = obj.Code, obj.Message
	return nil
}

// Message is any Stratum line: a request (method and non-null id), a
// notification (method and null id) or a response (result/error).
type Message struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  json.RawMessage `json:"error,omitempty"`
}

// Parse decodes one line. It fails on invalid JSON and on a line that is
// neither a method call nor a response.
func Parse(line []byte) (*Message, error) {
	var m Message
	if err := json.Unmarshal(line, &m); err != nil {
		return nil, fmt.Errorf("invalid JSON %q: %w", truncate(line), err)
	}
	if m.Method == "" && m.Result == nil && m.Error == nil {
		return nil, fmt.Errorf("line %q: neither a method call nor a response", truncate(line))
	}
	return &m, nil
}

// IsNotification reports whether m is a method call without an id.
func (m *Message) IsNotification() bool {
	return m.Method != "" && (len(m.ID) == 0 || bytes.Equal(m.ID, []byte("null")))
}

// ResponseError returns the error of a response, or nil when it has none.
func (m *Message) ResponseError() *Error {
	if len(m.Error) == 0 || bytes.Equal(m.Error, []byte("null")) {
		return nil
	}
	var e Error
	if err := json.Unmarshal(m.Error, &e); err != nil {
		return &Error{Code: CodeOther, Message: string(m.Error)}
	}
	return &e
}

func truncate(b []byte) []byte {
	if len(b) > 80 {
		return append(append([]byte(nil), b[:80]...), "..."...)
	}
	return b
}

// AppendResponse appends a response line (with its newline) to buf. A nil
// result is encoded as null: every response carries "result". A bool or
// nil result is written without reflection (AppendResult); any other goes
// through encoding/json.
func AppendResponse(buf []byte, id json.RawMessage, result any, e *Error) ([]byte, error) {
	switch result.(type) {
	case nil, bool:
		return AppendResult(buf, id, result, e), nil
	}
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	res, err := json.Marshal(result)
	if err != nil {
		return buf, fmt.Errorf("encoding result %v: %w", result, err)
	}
	buf = append(buf, `{"id":`...)
	buf = append(buf, id...)
	buf = append(buf, `,"result":`...)
	buf = append(buf, res...)
	buf = append(buf, `,"error":`...)
	if e == nil {
		buf = append(buf, "null"...)
	} else {
		buf = e.appendJSON(buf)
	}
	return append(buf, "}\n"...), nil
}

// AppendRequest appends a method call line. A nil id makes it a
// notification ("id": null).
func AppendRequest(buf []byte, id any, method string, params any) ([]byte, error) {
	line, err := json.Marshal(struct {
		ID     any    `json:"id"`
		Method string `json:"method"`
		Params any    `json:"params"`
	}{id, method, params})
	if err != nil {
		return buf, fmt.Errorf("encoding %s: %w", method, err)
	}
	buf = append(buf, line...)
	return append(buf, '\n'), nil
}

// Notify is the parsed form of mining.notify's params.
type Notify struct {
	JobID    string
	PrevHash string   // 64 hex, word-swapped (see chainmath.StratumPrevHash)
	Coinb1   string   // hex
	Coinb2   string   // hex
	Branch   []string // hex, internal byte order
	Version  string   // %08x
	NBits    string   // %08x
	NTime    string   // %08x
	Clean    bool
}

// MarshalJSON encodes n as the 9-element params array.
func (n *Notify) MarshalJSON() ([]byte, error) {
	br := n.Branch
	if br == nil {
		br = []string{}
	}
	return json.Marshal([]any{n.JobID, n.PrevHash, n.Coinb1, n.Coinb2, br, n.Version, n.NBits, n.NTime, n.Clean})
}

// ParseNotify decodes mining.notify params.
func ParseNotify(params json.RawMessage) (*Notify, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(params, &raw); err != nil {
		return nil, fmt.Errorf("mining.notify params %q: %w", truncate(params), err)
	}
	if len(raw) < 9 {
		return nil, fmt.Errorf("mining.notify: want 9 params, have %d", len(raw))
	}
	var n Notify
	dst := []any{&n.JobID, &n.PrevHash, &n.Coinb1, &n.Coinb2, &n.Branch, &n.Version, &n.NBits, &n.NTime, &n.Clean}
	for i, d := range dst {
		if err := json.Unmarshal(raw[i], d); err != nil {
			return nil, fmt.Errorf("mining.notify param %d %s: %w", i, raw[i], err)
		}
	}
	return &n, nil
}

// Submit is the parsed form of mining.submit's params.
type Submit struct {
	Worker      string
	JobID       string
	Extranonce2 string
	NTime       string
	Nonce       string
	VersionBits string // empty when the miner does not roll the version
}

// ParseSubmit decodes mining.submit params: five or six strings.
func ParseSubmit(params json.RawMessage) (*Submit, error) {
	var p []string
	if err := json.Unmarshal(params, &p); err != nil {
		return nil, fmt.Errorf("mining.submit params %q: want an array of strings: %w", truncate(params), err)
	}
	if len(p) < 5 || len(p) > 6 {
		return nil, fmt.Errorf("mining.submit: want 5 or 6 params, have %d", len(p))
	}
	s := &Submit{Worker: p[0], JobID: p[1], Extranonce2: p[2], NTime: p[3], Nonce: p[4]}
	if len(p) == 6 {
		s.VersionBits = p[5]
	}
	return s, nil
}

// Params returns s as the mining.submit params array.
func (s *Submit) Params() []string {
	p := []string{s.Worker, s.JobID, s.Extranonce2, s.NTime, s.Nonce}
	if s.VersionBits != "" {
		p = append(p, s.VersionBits)
	}
	return p
}

// ParseHex32 parses an 8-hex-character big-endian uint32 (ntime, nonce,
// version, nbits).
func ParseHex32(field, s string) (uint32, error) {
	if len(s) != 8 {
		return 0, fmt.Errorf("%s %q: want 8 hex characters", field, s)
	}
	v, err := strconv.ParseUint(s, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("%s %q: not hex", field, s)
	}
	return uint32(v), nil
}

// Hex32 formats v as 8 big-endian hex characters.
func Hex32(v uint32) string {
	const digits = "0123456789abcdef"
	var b [8]byte
	for i := 7; i >= 0; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return string(b[:])
}

// ErrLineTooLong is returned by LineReader for a line over its limit.
var ErrLineTooLong = errors.New("stratum line too long")

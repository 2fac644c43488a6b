package stratum

import (
	"strconv"
	"unicode/utf8"
)

// The share path without reflection: ParseSubmitLine reads the common
// form of a mining.submit line and AppendResult writes the reply. Both
// are held, by FuzzSubmitLine and FuzzAppendResult, to give exactly what
// Parse with ParseSubmit and AppendResponse with encoding/json give.

// ParseSubmitLine parses line as a mining.submit request in its common
// form: one JSON object whose keys are "id", "method" and "params", each
// at most once and spelled in lower case, an id that is null, a number or
// a string without escapes, the method "mining.submit" and params of five
// or six strings of printable ASCII without escapes. For such a line it
// fills sub, returns the raw id (nil when the line has none; it aliases
// line) and ok. Any other line, valid or not, returns ok false and is
// left to Parse, which decides what it is: the fast path never accepts a
// line Parse and ParseSubmit would read differently.
func ParseSubmitLine(line []byte, sub *Submit) (id []byte, ok bool) {
	p := fastParser{b: line}
	p.ws()
	if !p.byte('{') {
		return nil, false
	}
	var seen uint8     // 1 id, 2 method, 4 params
	var offs [6][2]int // each field's bounds in line
	var fields [6]string
	nf := 0
	for first := true; ; first = false {
		p.ws()
		if p.byte('}') {
			if first {
				return nil, false // {} has no method
			}
			break
		}
		if !first {
			if !p.byte(',') {
				return nil, false
			}
			p.ws()
		}
		key, kok := p.plainString()
		if !kok {
			return nil, false
		}
		p.ws()
		if !p.byte(':') {
			return nil, false
		}
		p.ws()
		switch string(key) {
		case "id":
			if seen&1 != 0 {
				return nil, false
			}
			seen |= 1
			v, vok := p.idValue()
			if !vok {
				return nil, false
			}
			id = v
		case "method":
			if seen&2 != 0 {
				return nil, false
			}
			seen |= 2
			m, mok := p.plainString()
			if !mok || string(m) != "mining.submit" {
				return nil, false
			}
		case "params":
			if seen&4 != 0 {
				return nil, false
			}
			seen |= 4
			if !p.byte('[') {
				return nil, false
			}
			p.ws()
			start := p.i
			for {
				if nf == len(offs) {
					return nil, false
				}
				q := p.i
				if _, sok := p.plainString(); !sok {
					return nil, false
				}
				offs[nf] = [2]int{q + 1, p.i - 1}
				nf++
				p.ws()
				if p.byte(']') {
					break
				}
				if !p.byte(',') {
					return nil, false
				}
				p.ws()
			}
			if nf < 5 {
				return nil, false
			}
			// One allocation for all the fields: copy the params and
			// take every field as a substring of the copy.
			end := p.i
			all := string(line[start:end])
			for k := range nf {
				fields[k] = all[offs[k][0]-start : offs[k][1]-start]
			}
		default:
			return nil, false
		}
	}
	p.ws()
	if p.i != len(p.b) || seen&6 != 6 {
		return nil, false
	}
	*sub = Submit{Worker: fields[0], JobID: fields[1], Extranonce2: fields[2], NTime: fields[3], Nonce: fields[4]}
	if nf == 6 {
		sub.VersionBits = fields[5]
	}
	return id, true
}

type fastParser struct {
	b []byte
	i int
}

func (p *fastParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *fastParser) byte(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// plainString reads a string of printable ASCII without escapes and
// returns its contents.
func (p *fastParser) plainString() ([]byte, bool) {
	if !p.byte('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c == '"' {
			s := p.b[start:p.i]
			p.i++
			return s, true
		}
		if c < 0x20 || c > 0x7e || c == '\\' {
			return nil, false
		}
		p.i++
	}
	return nil, false
}

// idValue reads null, a JSON number or a plain string, and returns its
// raw bytes.
func (p *fastParser) idValue() ([]byte, bool) {
	start := p.i
	if p.i < len(p.b) && p.b[p.i] == '"' {
		if _, ok := p.plainString(); !ok {
			return nil, false
		}
		return p.b[start:p.i], true
	}
	if len(p.b)-p.i >= 4 && string(p.b[p.i:p.i+4]) == "null" {
		p.i += 4
		return p.b[start:p.i], true
	}
	// number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
	p.byte('-')
	if p.byte('0') {
	} else if p.i < len(p.b) && p.b[p.i] >= '1' && p.b[p.i] <= '9' {
		p.digits()
	} else {
		return nil, false
	}
	if p.byte('.') {
		if p.digits() == 0 {
			return nil, false
		}
	}
	if p.byte('e') || p.byte('E') {
		if !p.byte('+') {
			p.byte('-')
		}
		if p.digits() == 0 {
			return nil, false
		}
	}
	return p.b[start:p.i], true
}

func (p *fastParser) digits() int {
	n := 0
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
		n++
	}
	return n
}

// AppendResult appends the response line of a call whose result is a
// bool or null (result is true, false or nil), as AppendResponse would
// encode it, without reflection.
func AppendResult(buf []byte, id []byte, result any, e *Error) []byte {
	if len(id) == 0 {
		id = nullID
	}
	buf = append(buf, `{"id":`...)
	buf = append(buf, id...)
	switch result {
	case true:
		buf = append(buf, `,"result":true,"error":`...)
	case false:
		buf = append(buf, `,"result":false,"error":`...)
	default:
		buf = append(buf, `,"result":null,"error":`...)
	}
	if e == nil {
		buf = append(buf, "null"...)
	} else {
		buf = e.appendJSON(buf)
	}
	return append(buf, "}\n"...)
}

var nullID = []byte("null")

// appendJSON appends e as [code, "message", null].
func (e *Error) appendJSON(buf []byte) []byte {
	buf = append(buf, '[')
	buf = strconv.AppendInt(buf, int64(e.Code), 10)
	buf = append(buf, ',')
	buf = appendJSONString(buf, e.Message)
	return append(buf, ",null]"...)
}

// appendJSONString appends s as encoding/json's Marshal encodes a string:
// quotes, backslash and control characters escaped, <, > and & as \u00XX,
// invalid UTF-8 as \ufffd, U+2028 and U+2029 escaped.
func appendJSONString(buf []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			buf = append(buf, s[start:i]...)
			switch c {
			case '"', '\\':
				buf = append(buf, '\\', c)
			case '\n':
				buf = append(buf, '\\', 'n')
			case '\r':
				buf = append(buf, '\\', 'r')
			case '\t':
				buf = append(buf, '\\', 't')
			case '\b':
				buf = append(buf, '\\', 'b')
			case '\f':
				buf = append(buf, '\\', 'f')
			default:
				buf = append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			buf = append(buf, s[start:i]...)
			buf = append(buf, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}

// AppendSubmit appends a mining.submit request line with a numeric id, as
// AppendRequest(buf, id, "mining.submit", s.Params()) encodes it, without
// reflection (the load generator's share path).
func AppendSubmit(buf []byte, id uint64, s *Submit) []byte {
	buf = append(buf, `{"id":`...)
	buf = strconv.AppendUint(buf, id, 10)
	buf = append(buf, `,"method":"mining.submit","params":[`...)
	buf = appendJSONString(buf, s.Worker)
	for _, f := range []string{s.JobID, s.Extranonce2, s.NTime, s.Nonce} {
		buf = append(buf, ',')
		buf = appendJSONString(buf, f)
	}
	if s.VersionBits != "" {
		buf = append(buf, ',')
		buf = appendJSONString(buf, s.VersionBits)
	}
	return append(buf, "]}\n"...)
}

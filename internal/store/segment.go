package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// A share segment is one committed batch of shares packed into a single
// BLOB (table share_segments). Inserting one row per batch instead of one
// row per share takes SQLite's per-row cost (a statement step, 13 column
// bindings, a B-tree insert and an index insert) off the ledger's hot path.
//
// Layout (all integers little-endian or varint):
//
//	byte    format (segmentFormat)
//	uvarint number of shares
//	then per share:
//	  varint  time in Unix nanoseconds minus the previous share's (0 before the first)
//	  4 × str worker, extranonce1, job id, extranonce2
//	  uint32  ntime, nonce, version
//	  float64 difficulty, achieved (IEEE 754 bits)
//	  [32]    hash
//	  byte    flags (bit 0: block)
//
// A str is a uvarint r: r = 0 is followed by a uvarint length and the
// bytes of a string new to the segment, which is appended to the segment's
// string table; r > 0 names entry r-1 of that table. Workers, extranonce1s
// and job ids repeat within a batch, so most strings cost one byte.
const segmentFormat = 1

// shareFixedSize is the fixed-width tail of an encoded share.
const shareFixedSize = 3*4 + 2*8 + 32 + 1

type segmentEncoder struct {
	buf   []byte
	n     int
	prevT int64
	table map[string]uint64
}

func (e *segmentEncoder) reset() {
	e.buf = append(e.buf[:0], segmentFormat)
	e.n = 0
	e.prevT = 0
	if e.table == nil {
		e.table = make(map[string]uint64)
	}
	clear(e.table)
}

func (e *segmentEncoder) str(s string) {
	if r, ok := e.table[s]; ok {
		e.buf = binary.AppendUvarint(e.buf, r)
		return
	}
	e.buf = append(e.buf, 0)
	e.buf = binary.AppendUvarint(e.buf, uint64(len(s)))
	e.buf = append(e.buf, s...)
	e.table[s] = uint64(len(e.table) + 1)
}

func (e *segmentEncoder) add(sh *Share) {
	t := sh.Time.UnixNano()
	e.buf = binary.AppendVarint(e.buf, t-e.prevT)
	e.prevT = t
	e.str(sh.Worker)
	e.str(sh.Extranonce1)
	e.str(sh.JobID)
	e.str(sh.Extranonce2)
	e.buf = binary.LittleEndian.AppendUint32(e.buf, sh.NTime)
	e.buf = binary.LittleEndian.AppendUint32(e.buf, sh.Nonce)
	e.buf = binary.LittleEndian.AppendUint32(e.buf, sh.Version)
	e.buf = binary.LittleEndian.AppendUint64(e.buf, math.Float64bits(sh.Difficulty))
	e.buf = binary.LittleEndian.AppendUint64(e.buf, math.Float64bits(sh.Achieved))
	e.buf = append(e.buf, sh.Hash[:]...)
	var flags byte
	if sh.Block {
		flags |= 1
	}
	e.buf = append(e.buf, flags)
	e.n++
}

// bytes returns the encoded segment: the header with the count, then the
// shares.
func (e *segmentEncoder) bytes() []byte {
	head := binary.AppendUvarint([]byte{segmentFormat}, uint64(e.n))
	out := make([]byte, 0, len(head)+len(e.buf)-1)
	out = append(out, head...)
	return append(out, e.buf[1:]...)
}

var errSegmentShort = errors.New("segment ends early")

// decodeSegment decodes an encoded segment, appending to out the shares
// whose worker is worker ("" for all). It returns the new slice and the
// number of shares the segment holds.
func decodeSegment(out []Share, data []byte, worker string) ([]Share, int, error) {
	if len(data) < 1 {
		return out, 0, errSegmentShort
	}
	if data[0] != segmentFormat {
		return out, 0, fmt.Errorf("segment format %d, want %d", data[0], segmentFormat)
	}
	p := data[1:]
	count, k := binary.Uvarint(p)
	if k <= 0 {
		return out, 0, errors.New("bad share count")
	}
	p = p[k:]
	// Every share takes at least its fixed part plus five varint bytes.
	if count > uint64(len(p)/(shareFixedSize+5)) {
		return out, 0, fmt.Errorf("segment claims %d shares in %d bytes", count, len(p))
	}
	var table []string
	str := func() (string, error) {
		r, k := binary.Uvarint(p)
		if k <= 0 {
			return "", errSegmentShort
		}
		p = p[k:]
		if r > 0 {
			if r > uint64(len(table)) {
				return "", fmt.Errorf("string reference %d beyond a table of %d", r, len(table))
			}
			return table[r-1], nil
		}
		n, k := binary.Uvarint(p)
		if k <= 0 || n > uint64(len(p)-k) {
			return "", errSegmentShort
		}
		s := string(p[k : k+int(n)])
		p = p[k+int(n):]
		table = append(table, s)
		return s, nil
	}
	var prevT int64
	for i := range count {
		dt, k := binary.Varint(p)
		if k <= 0 {
			return out, 0, fmt.Errorf("share %d: %w", i, errSegmentShort)
		}
		p = p[k:]
		prevT += dt
		var sh Share
		var err error
		for _, f := range []*string{&sh.Worker, &sh.Extranonce1, &sh.JobID, &sh.Extranonce2} {
			if *f, err = str(); err != nil {
				return out, 0, fmt.Errorf("share %d: %w", i, err)
			}
		}
		if len(p) < shareFixedSize {
			return out, 0, fmt.Errorf("share %d: %w", i, errSegmentShort)
		}
		if worker != "" && sh.Worker != worker {
			p = p[shareFixedSize:]
			continue
		}
		sh.Time = time.Unix(0, prevT)
		sh.NTime = binary.LittleEndian.Uint32(p[0:])
		sh.Nonce = binary.LittleEndian.Uint32(p[4:])
		sh.Version = binary.LittleEndian.Uint32(p[8:])
		sh.Difficulty = math.Float64frombits(binary.LittleEndian.Uint64(p[12:]))
		sh.Achieved = math.Float64frombits(binary.LittleEndian.Uint64(p[20:]))
		copy(sh.Hash[:], p[28:60])
		if p[60]&^1 != 0 {
			return out, 0, fmt.Errorf("share %d: unknown flags %#x", i, p[60])
		}
		sh.Block = p[60]&1 != 0
		p = p[shareFixedSize:]
		out = append(out, sh)
	}
	if len(p) != 0 {
		return out, 0, fmt.Errorf("%d bytes after the last share", len(p))
	}
	return out, int(count), nil
}

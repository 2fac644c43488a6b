package sharelog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
)

// Wire format versions: the first byte of every message body.
const (
	shareV1 = 1 // one share (AppendShare); also each record of a batch
	batchV2 = 2 // a batch of shares (AppendBatch)
	blockV1 = 1
)

// MaxBatchShares bounds the count of a batch message on decode.
const MaxBatchShares = 65536

// shareFixed is the size of a share message without its four strings.
const shareFixed = 1 + 32 + 8 + 4 + 4 + 4 + 8 + 8 + 1

// maxText bounds each string of a share and a block's finder on decode.
const maxText = 1 << 16

// AppendShare appends the binary encoding of sh to dst and returns it.
//
// Layout (integers little-endian, strings as a uvarint byte length then
// the bytes):
//
//	offset size field
//	0      1    format version (1)
//	1      32   header hash, internal byte order
//	33     8    share time, Unix nanoseconds (int64)
//	41     4    ntime
//	45     4    nonce
//	49     4    version
//	53     8    difficulty (IEEE 754 float64 bits)
//	61     8    achieved difficulty (float64 bits)
//	69     1    flags: bit 0 = the share is a block
//	70     ...  worker, extranonce1, job id, extranonce2 (strings)
//
// A typical share is about 100 bytes, a third of its JSON encoding.
func AppendShare(dst []byte, sh ledger.Share) []byte {
	dst = append(dst, shareV1)
	dst = append(dst, sh.Hash[:]...)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(unixNano(sh.Time)))
	dst = binary.LittleEndian.AppendUint32(dst, sh.NTime)
	dst = binary.LittleEndian.AppendUint32(dst, sh.Nonce)
	dst = binary.LittleEndian.AppendUint32(dst, sh.Version)
	dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(sh.Difficulty))
	dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(sh.Achieved))
	var flags byte
	if sh.Block {
		flags |= 1
	}
	dst = append(dst, flags)
	for _, s := range []string{sh.Worker, sh.Extranonce1, sh.JobID, sh.Extranonce2} {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	return dst
}

// DecodeShare decodes a message body written by AppendShare. The error
// says what was wrong and at which offset.
func DecodeShare(b []byte) (ledger.Share, error) {
	var sh ledger.Share
	if len(b) < shareFixed {
		return sh, fmt.Errorf("sharelog: share message of %d bytes: want at least %d", len(b), shareFixed)
	}
	if b[0] != shareV1 {
		return sh, fmt.Errorf("sharelog: share message format version %d: want %d", b[0], shareV1)
	}
	copy(sh.Hash[:], b[1:33])
	sh.Time = fromUnixNano(int64(binary.LittleEndian.Uint64(b[33:])))
	sh.NTime = binary.LittleEndian.Uint32(b[41:])
	sh.Nonce = binary.LittleEndian.Uint32(b[45:])
	sh.Version = binary.LittleEndian.Uint32(b[49:])
	sh.Difficulty = math.Float64frombits(binary.LittleEndian.Uint64(b[53:]))
	sh.Achieved = math.Float64frombits(binary.LittleEndian.Uint64(b[61:]))
	flags := b[69]
	if flags&^1 != 0 {
		return sh, fmt.Errorf("sharelog: share %s: unknown flags %#x", sh.Hash, flags)
	}
	sh.Block = flags&1 != 0
	off := shareFixed
	var strs [4]string
	for i, name := range []string{"worker", "extranonce1", "job id", "extranonce2"} {
		s, n, err := readString(b[off:])
		if err != nil {
			return sh, fmt.Errorf("sharelog: share %s: %s at offset %d: %v", sh.Hash, name, off, err)
		}
		strs[i] = s
		off += n
	}
	if off != len(b) {
		return sh, fmt.Errorf("sharelog: share %s: %d bytes after the last field", sh.Hash, len(b)-off)
	}
	sh.Worker, sh.Extranonce1, sh.JobID, sh.Extranonce2 = strs[0], strs[1], strs[2], strs[3]
	return sh, nil
}

// AppendBatch appends a batch message holding the share records recs
// (each as AppendShare wrote it) to dst and returns it.
//
// Layout: the format version (2), the number of records as a uvarint,
// then each record as a uvarint byte length followed by the record. A
// batch of 512 typical shares is about 57 KB.
func AppendBatch(dst []byte, recs [][]byte) []byte {
	dst = append(dst, batchV2)
	dst = binary.AppendUvarint(dst, uint64(len(recs)))
	for _, r := range recs {
		dst = binary.AppendUvarint(dst, uint64(len(r)))
		dst = append(dst, r...)
	}
	return dst
}

// BatchSize is the size of the batch message AppendBatch would write for
// records of the given total size.
func BatchSize(records, recordBytes int) int {
	return 1 + binary.MaxVarintLen64 + records*binary.MaxVarintLen32 + recordBytes
}

// DecodeShares decodes a message on the SHARES stream: a batch
// (AppendBatch) or a single share (AppendShare, as front-ends before
// batch messages wrote). The error says what was wrong and where.
func DecodeShares(b []byte) ([]ledger.Share, error) {
	if len(b) == 0 {
		return nil, errors.New("sharelog: empty share message")
	}
	switch b[0] {
	case shareV1:
		sh, err := DecodeShare(b)
		if err != nil {
			return nil, err
		}
		return []ledger.Share{sh}, nil
	case batchV2:
	default:
		return nil, fmt.Errorf("sharelog: share message format version %d: want %d or %d", b[0], shareV1, batchV2)
	}
	n, k := binary.Uvarint(b[1:])
	if k <= 0 {
		return nil, errors.New("sharelog: batch message: bad record count")
	}
	if n == 0 || n > MaxBatchShares {
		return nil, fmt.Errorf("sharelog: batch message of %d shares: want 1 to %d", n, MaxBatchShares)
	}
	off := 1 + k
	// Each record takes at least shareFixed+1 bytes: a count the body
	// cannot hold is refused before anything is allocated for it.
	if uint64(len(b)-off) < n*(shareFixed+1) {
		return nil, fmt.Errorf("sharelog: batch message of %d bytes cannot hold the %d shares it counts", len(b), n)
	}
	out := make([]ledger.Share, 0, n)
	for i := range n {
		l, k := binary.Uvarint(b[off:])
		if k <= 0 || l > uint64(len(b)-off-k) {
			return nil, fmt.Errorf("sharelog: batch message: share %d of %d: record length at offset %d does not fit the %d bytes left", i, n, off, len(b)-off)
		}
		off += k
		sh, err := DecodeShare(b[off : off+int(l)])
		if err != nil {
			return nil, fmt.Errorf("sharelog: batch message: share %d of %d at offset %d: %w", i, n, off, err)
		}
		out = append(out, sh)
		off += int(l)
	}
	if off != len(b) {
		return nil, fmt.Errorf("sharelog: batch message: %d bytes after the last of its %d shares", len(b)-off, n)
	}
	return out, nil
}

func readString(b []byte) (string, int, error) {
	l, n := binary.Uvarint(b)
	if n <= 0 {
		return "", 0, errors.New("bad length")
	}
	if l > maxText {
		return "", 0, fmt.Errorf("length %d: at most %d", l, maxText)
	}
	if uint64(len(b)-n) < l {
		return "", 0, fmt.Errorf("length %d but only %d bytes left", l, len(b)-n)
	}
	return string(b[n : n+int(l)]), n + int(l), nil
}

// blockFixed is the size of a block message without its finder and raw
// block.
const blockFixed = 1 + 8 + 32 + chainmath.HeaderSize + 4 + 8

// AppendBlock appends the binary encoding of a found block to dst.
//
// Layout (integers little-endian):
//
//	offset size field
//	0      1    format version (1)
//	1      8    height (int64)
//	9      32   block hash, internal byte order
//	41     80   header
//	121    4    header time
//	125    8    found at, Unix nanoseconds (int64)
//	133    ...  finder (uvarint length, bytes), then the raw block
//	            (uvarint length, bytes)
func AppendBlock(dst []byte, b ledger.Block) []byte {
	dst = append(dst, blockV1)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(b.Height))
	dst = append(dst, b.Hash[:]...)
	dst = append(dst, b.Header[:]...)
	dst = binary.LittleEndian.AppendUint32(dst, b.Time)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(unixNano(b.FoundAt)))
	dst = binary.AppendUvarint(dst, uint64(len(b.Finder)))
	dst = append(dst, b.Finder...)
	dst = binary.AppendUvarint(dst, uint64(len(b.Raw)))
	return append(dst, b.Raw...)
}

// DecodeBlock decodes a message body written by AppendBlock.
func DecodeBlock(p []byte) (ledger.Block, error) {
	var b ledger.Block
	if len(p) < blockFixed {
		return b, fmt.Errorf("sharelog: block message of %d bytes: want at least %d", len(p), blockFixed)
	}
	if p[0] != blockV1 {
		return b, fmt.Errorf("sharelog: block message format version %d: want %d", p[0], blockV1)
	}
	b.Height = int64(binary.LittleEndian.Uint64(p[1:]))
	copy(b.Hash[:], p[9:41])
	copy(b.Header[:], p[41:121])
	b.Time = binary.LittleEndian.Uint32(p[121:])
	b.FoundAt = fromUnixNano(int64(binary.LittleEndian.Uint64(p[125:])))
	off := blockFixed
	finder, n, err := readString(p[off:])
	if err != nil {
		return b, fmt.Errorf("sharelog: block %s: finder at offset %d: %v", b.Hash, off, err)
	}
	b.Finder = finder
	off += n
	l, n := binary.Uvarint(p[off:])
	if n <= 0 || uint64(len(p)-off-n) != l {
		return b, fmt.Errorf("sharelog: block %s: raw block length at offset %d does not match the %d bytes left", b.Hash, off, len(p)-off)
	}
	off += n
	b.Raw = append([]byte(nil), p[off:]...)
	return b, nil
}

// unixNano is t in Unix nanoseconds, 0 for the zero time.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromUnixNano undoes unixNano.
func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

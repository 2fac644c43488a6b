package hasher

import (
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"hash"
	"sync"

	"github.com/powcoord/powcoord/internal/chainmath"
)

// stdlibMidstate returns crypto/sha256's state after the first 64 bytes
// of header, in its MarshalBinary form.
func stdlibMidstate(header *[chainmath.HeaderSize]byte) []byte {
	h := sha256.New()
	h.Write(header[:64])
	b, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		panic("hasher: crypto/sha256 cannot marshal its state: " + err.Error())
	}
	return b
}

// stdlibState is one scanning goroutine's crypto/sha256 digest and
// buffers, pooled so that a Scan call does not allocate.
type stdlibState struct {
	h    hash.Hash
	u    encoding.BinaryUnmarshaler
	tail [16]byte
	sum  [sha256.Size]byte
}

var stdlibPool = sync.Pool{New: func() any {
	h := sha256.New()
	return &stdlibState{h: h, u: h.(encoding.BinaryUnmarshaler)}
}}

// stdlibKernel is the baseline: crypto/sha256 with the midstate restored
// for every nonce, and a full 256-bit compare.
type stdlibKernel struct{}

func (stdlibKernel) Name() string { return "stdlib" }

func (stdlibKernel) Scan(j *Job, start uint32, count uint64, out []uint32) int {
	count = clampCount(start, count)
	st := stdlibPool.Get().(*stdlibState)
	defer stdlibPool.Put(st)
	copy(st.tail[:], j.Header[64:])
	n := 0
	for i := uint64(0); i < count; i++ {
		nonce := start + uint32(i)
		binary.LittleEndian.PutUint32(st.tail[12:], nonce)
		if err := st.u.UnmarshalBinary(j.midS); err != nil {
			panic("hasher: crypto/sha256 rejects its own state: " + err.Error())
		}
		st.h.Write(st.tail[:])
		st.h.Sum(st.sum[:0])
		h := chainmath.Hash(sha256.Sum256(st.sum[:]))
		if j.Target.Meets(&h) {
			if n < len(out) {
				out[n] = nonce
			}
			n++
		}
	}
	return min(n, len(out))
}

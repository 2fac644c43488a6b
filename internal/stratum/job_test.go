package stratum

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
)

// Mainnet block 100000 (000000000003ba27…e506) as a pool would have sent
// it: its real coinbase split around an extranonce slot inside the
// scriptSig (08 04 | 4c86041b | 020602 | ffffffff…), and the merkle branch
// of its three other transactions.
const (
	b100kCoinb1 = "01000000" + "01" + "0000000000000000000000000000000000000000000000000000000000000000" + "ffffffff" + "08" + "04"
	b100kEn1    = "4c86041b"
	b100kEn2    = "020602"
	b100kCoinb2 = "ffffffff" + "01" + "00f2052a01000000" + "43" +
		"41041b0e8c2567c12536aa13357b79a073dc4444acb83c4ec7a0e2f99dd7457516c5817242da796924ca4e99947d087fedf9ce467cb9f7c6287078f801df276fdf84ac" +
		"00000000"
	// The prevhash 000000000002d01c1fccc21636b607dfd930d31d01c3a62104612a1719011250
	// as notify carries it: the display hex's eight 4-byte words in
	// reverse order (each word of the internal bytes byte-swapped).
	b100kPrevNotify = "19011250" + "04612a17" + "01c3a621" + "d930d31d" + "36b607df" + "1fccc216" + "0002d01c" + "00000000"
	b100kPrev       = "000000000002d01c1fccc21636b607dfd930d31d01c3a62104612a1719011250"
	b100kRoot       = "f3e94742aca4b5ef85488dc37c06c3282295ffec960994b2c0d5ac2a25a95766"
	b100kHash       = "000000000003ba27aa200b1cecaad478d2b00432346c3f1f3986da1afd33e506"
	b100kNTime      = 0x4d1b2237 // 1293623863
	b100kNonce      = 0x10572b0f // 274148111
)

// b100kTxIDs are the block's transactions (display order hex).
var b100kTxIDs = []string{
	"8c14f0db3df150123e6f3dbbf30f8b955a8249b62ac1d1ff16284aefa3d06d87", // coinbase
	"fff2525b8931402dd09222c50775608f75787bd2b87e56995a7bdd30f79702c4",
	"6359f0868171b1d194cbee1af2f16ea598ae8fad666d9b012c8ed2b79a236ec4",
	"e9a66845e05d5abc0ad04ec80f774a7e585c6e8db975962d069a522137b80c1d",
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// block100kParams is the notify params of block 100000, written out.
func block100kParams(t testing.TB) string {
	t.Helper()
	var others []chainmath.Hash
	for _, s := range b100kTxIDs[1:] {
		h, err := chainmath.HashFromDisplay(s)
		if err != nil {
			t.Fatal(err)
		}
		others = append(others, h)
	}
	br := chainmath.MerkleBranch(others)
	if len(br) != 2 {
		t.Fatalf("branch of 3 transactions has %d entries, want 2", len(br))
	}
	// The first entry is the second txid in internal byte order, the
	// display hex reversed byte by byte.
	const first = "c40297f730dd7b5a99567eb8d27b78758f607507c52292d02d4031895b52f2ff"
	if got := hex.EncodeToString(br[0][:]); got != first {
		t.Fatalf("branch[0] %s, want %s", got, first)
	}
	return `["186a0","` + b100kPrevNotify + `","` + b100kCoinb1 + `","` + b100kCoinb2 + `",["` + first + `","` +
		hex.EncodeToString(br[1][:]) + `"],"00000001","1b04864c","4d1b2237",true]`
}

// TestJobBlock100000 rebuilds mainnet block 100000 from its notify and
// gets the block's own coinbase txid, merkle root and hash.
func TestJobBlock100000(t *testing.T) {
	j, err := ParseJob(json.RawMessage(block100kParams(t)))
	if err != nil {
		t.Fatal(err)
	}
	if j.ID != "186a0" || !j.Clean || j.Version != 1 || j.Bits != 0x1b04864c || j.NTime != b100kNTime || len(j.Branch) != 2 {
		t.Fatalf("decoded %+v", j)
	}
	if got := j.PrevHash.String(); got != b100kPrev {
		t.Fatalf("prevhash %s, want %s", got, b100kPrev)
	}
	en1, en2 := mustHex(t, b100kEn1), mustHex(t, b100kEn2)
	cb := j.AppendCoinbase([]byte("keep"), en1, en2)
	if string(cb[:4]) != "keep" || len(cb)-4 != j.CoinbaseSize(len(en1), len(en2)) || len(cb)-4 != 135 {
		t.Fatalf("coinbase %x: %d bytes after the prefix, want 135", cb, len(cb)-4)
	}
	if got := chainmath.DoubleSHA256(cb[4:]).String(); got != b100kTxIDs[0] {
		t.Fatalf("coinbase txid %s, want %s", got, b100kTxIDs[0])
	}
	if got := j.MerkleRoot(en1, en2).String(); got != b100kRoot {
		t.Fatalf("merkle root %s, want %s", got, b100kRoot)
	}
	if got := j.RootOf(cb[4:]).String(); got != b100kRoot {
		t.Fatalf("RootOf %s, want %s", got, b100kRoot)
	}
	h := j.Header(en1, en2, b100kNTime, b100kNonce, 0, 0)
	if got := h.Hash().String(); got != b100kHash {
		t.Fatalf("block hash %s, want %s", got, b100kHash)
	}
	// The serialized header, field by field (little-endian numbers, hashes
	// in internal order).
	b := h.Bytes()
	wantHdr := "01000000" + "50120119172a610421a6c3011dd330d9df07b63616c2cc1f1cd0020000000000" +
		"6657a9252aacd5c0b2940996ecff952228c3067cc38d4885efb5a4ac4247e9f3" + "37221b4d" + "4c86041b" + "0f2b5710"
	if got := hex.EncodeToString(b[:]); got != wantHdr {
		t.Fatalf("header\n got %s\nwant %s", got, wantHdr)
	}
	tgt, err := j.BlockTarget()
	if err != nil {
		t.Fatal(err)
	}
	hash := h.Hash()
	if !tgt.Meets(&hash) {
		t.Fatal("block 100000 does not meet its own target")
	}
	// One nonce off is a different header and no block.
	h2 := j.Header(en1, en2, b100kNTime, b100kNonce+1, 0, 0)
	if hash2 := h2.Hash(); tgt.Meets(&hash2) {
		t.Fatal("nonce+1 meets the block target")
	}
	// Encoding the job gives back the notify it came from.
	enc, err := json.Marshal(j.Notify())
	if err != nil {
		t.Fatal(err)
	}
	if string(enc) != block100kParams(t) {
		t.Fatalf("Notify()\n got %s\nwant %s", enc, block100kParams(t))
	}
}

// TestJobGenesis rebuilds the mainnet genesis block: one transaction, so
// an empty branch and a root equal to the coinbase txid.
func TestJobGenesis(t *testing.T) {
	g := chaincfg.MainNetParams.GenesisBlock
	var sb strings.Builder
	if err := g.Transactions[0].SerializeNoWitness(hexWriter{&sb}); err != nil {
		t.Fatal(err)
	}
	cb := mustHex(t, sb.String())
	// Bytes 42..49 lie inside the scriptSig (04ffff001d0104…): call four of
	// them extranonce1 and four extranonce2.
	n := &Notify{
		JobID:    "0",
		PrevHash: strings.Repeat("0", 64),
		Coinb1:   hex.EncodeToString(cb[:42]),
		Coinb2:   hex.EncodeToString(cb[50:]),
		Version:  "00000001",
		NBits:    "1d00ffff",
		NTime:    "495fab29",
	}
	j, err := DecodeNotify(n)
	if err != nil {
		t.Fatal(err)
	}
	h := j.Header(cb[42:46], cb[46:50], j.NTime, 2083236893, 0, 0)
	if got, want := h.Hash().String(), "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"; got != want {
		t.Fatalf("genesis hash %s, want %s", got, want)
	}
	if got, want := h.MerkleRoot.String(), "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"; got != want {
		t.Fatalf("genesis merkle root %s, want %s", got, want)
	}
}

type hexWriter struct{ b *strings.Builder }

func (w hexWriter) Write(p []byte) (int, error) {
	w.b.WriteString(hex.EncodeToString(p))
	return len(p), nil
}

// TestJobPrevHashByteOrder: the notify's prevhash is the internal bytes
// with every 4-byte word reversed, not the display hex and not the
// internal hex.
func TestJobPrevHashByteOrder(t *testing.T) {
	n := &Notify{JobID: "1", PrevHash: b100kPrevNotify, Version: "00000001", NBits: "1d00ffff", NTime: "00000000"}
	j, err := DecodeNotify(n)
	if err != nil {
		t.Fatal(err)
	}
	internal := "50120119172a610421a6c3011dd330d9df07b63616c2cc1f1cd0020000000000"
	if got := hex.EncodeToString(j.PrevHash[:]); got != internal {
		t.Fatalf("internal prevhash %s, want %s", got, internal)
	}
	if got := j.PrevHash.String(); got != b100kPrev {
		t.Fatalf("display prevhash %s, want %s", got, b100kPrev)
	}
	// The first notify word 19011250 is internal bytes 50 12 01 19 reversed.
	if j.PrevHash[0] != 0x50 || j.PrevHash[3] != 0x19 {
		t.Fatalf("first word %x", j.PrevHash[:4])
	}
	if got := j.Notify().PrevHash; got != b100kPrevNotify {
		t.Fatalf("re-encoded prevhash %s, want %s", got, b100kPrevNotify)
	}
}

// TestJobVersionRolling: the bits under the mask come from the miner, the
// rest from the job; mask 0 keeps the job's version.
func TestJobVersionRolling(t *testing.T) {
	j := &Job{ID: "v", Version: 0x20000000, Bits: 0x1d00ffff}
	const mask = 0x1fffe000 // BIP 320's general-purpose bits
	for _, c := range []struct {
		bits, mask, want uint32
	}{
		{0, 0, 0x20000000},
		{0x00002000, mask, 0x20002000},
		{0x1fffe000, mask, 0x3fffe000},
		{0xffffffff, mask, 0x3fffe000}, // bits outside the mask are ignored
		{0x00001fff, mask, 0x20000000}, // all outside
		{0x1fffe000, 0, 0x20000000},    // no mask: no rolling
		{0x00000000, 0x20000000, 0},    // a mask may clear job bits too
	} {
		if got := j.RolledVersion(c.bits, c.mask); got != c.want {
			t.Errorf("RolledVersion(%08x, %08x) = %08x, want %08x", c.bits, c.mask, got, c.want)
		}
		h := j.Header(nil, []byte{1}, 5, 6, c.bits, c.mask)
		if h.Version != c.want || h.Time != 5 || h.Nonce != 6 || h.Bits != 0x1d00ffff {
			t.Errorf("Header(bits %08x, mask %08x) = %+v, want version %08x", c.bits, c.mask, h, c.want)
		}
	}
	// Rolling changes the hash of an otherwise identical header.
	a := j.Header(nil, []byte{1}, 5, 6, 0, mask)
	b := j.Header(nil, []byte{1}, 5, 6, 0x2000, mask)
	if a.Hash() == b.Hash() {
		t.Fatal("rolled and unrolled headers hash the same")
	}
}

// TestDecodeNotifyErrors: every malformed field is refused with an error
// naming the field and the bad value.
func TestDecodeNotifyErrors(t *testing.T) {
	good := func() *Notify {
		return &Notify{JobID: "1f", PrevHash: b100kPrevNotify, Coinb1: "0100", Coinb2: "ff00", Branch: []string{strings.Repeat("ab", 32)},
			Version: "20000000", NBits: "1d00ffff", NTime: "5f5e1000", Clean: true}
	}
	if _, err := DecodeNotify(good()); err != nil {
		t.Fatalf("good notify refused: %v", err)
	}
	for _, c := range []struct {
		name  string
		edit  func(n *Notify)
		wants []string // substrings of the error
	}{
		{"empty job id", func(n *Notify) { n.JobID = "" }, []string{"job id is empty"}},
		{"short prevhash", func(n *Notify) { n.PrevHash = "abcd" }, []string{`job "1f"`, "prevhash", `"abcd"`, "64"}},
		{"prevhash not hex", func(n *Notify) { n.PrevHash = strings.Repeat("zz", 32) }, []string{"prevhash", "zzzz"}},
		{"coinb1 not hex", func(n *Notify) { n.Coinb1 = "01xy" }, []string{"coinb1", `"01xy"`}},
		{"coinb1 odd", func(n *Notify) { n.Coinb1 = "010" }, []string{"coinb1", `"010"`, "odd"}},
		{"coinb2 not hex", func(n *Notify) { n.Coinb2 = "gg" }, []string{"coinb2", `"gg"`}},
		{"branch short", func(n *Notify) { n.Branch = append(n.Branch, "abcd") }, []string{"merkle branch entry 1", `"abcd"`, "64"}},
		{"branch not hex", func(n *Notify) { n.Branch[0] = strings.Repeat("q", 64) }, []string{"merkle branch entry 0", "qqqq", "not hex"}},
		{"version short", func(n *Notify) { n.Version = "2000000" }, []string{"version", `"2000000"`, "8 hex"}},
		{"version not hex", func(n *Notify) { n.Version = "2000000x" }, []string{"version", `"2000000x"`, "not hex"}},
		{"nbits not hex", func(n *Notify) { n.NBits = "1d00fffg" }, []string{"nbits", `"1d00fffg"`}},
		{"nbits negative", func(n *Notify) { n.NBits = "1d80ffff" }, []string{"nbits", "1d80ffff", "negative"}},
		{"nbits zero", func(n *Notify) { n.NBits = "00000000" }, []string{"nbits", "00000000", "zero"}},
		{"nbits overflow", func(n *Notify) { n.NBits = "2200ffff" }, []string{"nbits", "2200ffff", "overflows"}},
		{"ntime long", func(n *Notify) { n.NTime = "5f5e10000" }, []string{"ntime", `"5f5e10000"`}},
		{"ntime signed", func(n *Notify) { n.NTime = "+5f5e100" }, []string{"ntime", `"+5f5e100"`}},
	} {
		n := good()
		c.edit(n)
		j, err := DecodeNotify(n)
		if err == nil {
			t.Errorf("%s: accepted as %+v", c.name, j)
			continue
		}
		for _, w := range c.wants {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", c.name, err, w)
			}
		}
	}
	// A long bad value is cut short in the message.
	n := good()
	n.Coinb1 = strings.Repeat("0", 9999) + "x"
	_, err := DecodeNotify(n)
	if err == nil || len(err.Error()) > 200 || !strings.Contains(err.Error(), "10000 characters") {
		t.Fatalf("long coinb1: error %q, want a short one giving the length", err)
	}
	// ParseJob refuses what ParseNotify refuses.
	if _, err := ParseJob(json.RawMessage(`["1f","00"]`)); err == nil || !strings.Contains(err.Error(), "want 9 params") {
		t.Fatalf("short params: %v", err)
	}
}

// TestJobNoAllocs: a share's header is built without allocating, for a
// coinbase of an ordinary size.
func TestJobNoAllocs(t *testing.T) {
	j, err := ParseJob(json.RawMessage(block100kParams(t)))
	if err != nil {
		t.Fatal(err)
	}
	en1, en2 := mustHex(t, b100kEn1), mustHex(t, b100kEn2)
	var sink chainmath.Header
	if n := testing.AllocsPerRun(50, func() { sink = j.Header(en1, en2, 1, 2, 3, 4) }); n != 0 {
		t.Fatalf("Header: %v allocations, want 0", n)
	}
	// A coinbase past the stack buffer still gives the right root.
	big := &Job{Coinb1: make([]byte, 700), Coinb2: []byte{1}}
	if got, want := big.MerkleRoot([]byte{2}, []byte{3}), chainmath.DoubleSHA256(append(make([]byte, 700), 2, 3, 1)); got != want {
		t.Fatalf("root of a 703-byte coinbase %s, want %s", got, want)
	}
	_ = sink
}

// FuzzDecodeNotify: whatever the params, ParseJob returns a job or an
// error without panicking; a job it returns encodes back to a notify that
// decodes to the same job, and its header can be built.
func FuzzDecodeNotify(f *testing.F) {
	f.Add([]byte(block100kParams(f)))
	f.Add([]byte(`["1f","` + strings.Repeat("0", 64) + `","01","02",[],"20000000","1d00ffff","5f5e1000",false]`))
	f.Add([]byte(`["1f","` + strings.Repeat("0", 64) + `","01","02",["` + strings.Repeat("ab", 32) + `"],"20000000","1d80ffff","5f5e1000",false]`))
	f.Add([]byte(`["","","","",null,"","","",true]`))
	f.Fuzz(func(t *testing.T, params []byte) {
		j, err := ParseJob(params)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		back, err := DecodeNotify(j.Notify())
		if err != nil {
			t.Fatalf("re-encoded job refused: %v", err)
		}
		if !reflect.DeepEqual(back, j) {
			t.Fatalf("round trip\n got %+v\nwant %+v", back, j)
		}
		if _, err := j.BlockTarget(); err != nil {
			t.Fatalf("decoded job has a bad block target: %v", err)
		}
		h := j.Header([]byte{1, 2}, []byte{3}, j.NTime, 7, 0, 0)
		if h.PrevBlock != j.PrevHash || h.Version != j.Version || h.MerkleRoot != j.MerkleRoot([]byte{1, 2}, []byte{3}) {
			t.Fatalf("header %+v does not carry the job %+v", h, j)
		}
	})
}

// TestDecodeNotifyCorpus: the checked-in seeds of FuzzDecodeNotify (which
// the plain test run also replays) are decided as their names say: those
// named valid-* decode, every other one is refused.
func TestDecodeNotifyCorpus(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzDecodeNotify", "*"))
	if err != nil || len(files) < 10 {
		t.Fatalf("corpus: %d files, %v", len(files), err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) != 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "[]byte(") {
			t.Fatalf("%s: not a one-value fuzz corpus file", f)
		}
		params, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		_, err = ParseJob(json.RawMessage(params))
		if valid := strings.HasPrefix(filepath.Base(f), "valid-"); valid != (err == nil) {
			t.Errorf("%s: error %v, want valid=%v", filepath.Base(f), err, valid)
		}
	}
}

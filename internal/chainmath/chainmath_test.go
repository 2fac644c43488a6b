package chainmath

import (
	"bytes"
	"encoding/hex"
	"math/big"
	"testing"

	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/wire/v2"
)

func mustHash(t *testing.T, s string) Hash {
	t.Helper()
	h, err := HashFromDisplay(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// Mainnet genesis, field by field.
func TestGenesisHeader(t *testing.T) {
	h := Header{
		Version:    1,
		MerkleRoot: mustHash(t, "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"),
		Time:       1231006505,
		Bits:       0x1d00ffff,
		Nonce:      2083236893,
	}
	b := h.Bytes()
	want := "01000000" + // version
		"0000000000000000000000000000000000000000000000000000000000000000" + // prev
		"3ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a" + // merkle root, internal order
		"29ab5f49" + // time 1231006505
		"ffff001d" + // bits
		"1dac2b7c" // nonce
	if got := hex.EncodeToString(b[:]); got != want {
		t.Fatalf("genesis header\n got %s\nwant %s", got, want)
	}
	if got := h.Hash().String(); got != "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f" {
		t.Fatalf("genesis hash %s", got)
	}
	back, err := ParseHeader(b[:])
	if err != nil || back != h {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	// The genesis coinbase is the only transaction: root == its txid.
	cb := chaincfg.MainNetParams.GenesisBlock.Transactions[0]
	if got := MerkleRoot([]Hash{Hash(cb.TxHash())}); got != h.MerkleRoot {
		t.Fatalf("genesis merkle root %s", got)
	}
	if _, err := ParseHeader(b[:79]); err == nil {
		t.Fatal("79-byte header accepted")
	}
}

// Block 125552: four transactions, nBits 0x1a44b9f2.
func TestBlock125552(t *testing.T) {
	txids := []Hash{
		mustHash(t, "51d37bdd871c9e1f4d5541be67a6ab625e32028744d7d4609d0c37747b40cd2d"),
		mustHash(t, "60c25dda8d41f8d3d7d5c6249e2ea1b05a25bf7ae2ad6d904b512b31f997e1a1"),
		mustHash(t, "01f314cdd8566d3e5dbdd97de2d9fbfbfd6873e916a00d48758282cbb81a45b9"),
		mustHash(t, "b519286a1040da6ad83c783eb2872659eaf57b1bec088e614776ffe7dc8f6d01"),
	}
	root := mustHash(t, "2b12fcf1b09288fcaff797d71e950e71ae42b91e8bdb2304758dfcffc2b620e3")
	if got := MerkleRoot(txids); got != root {
		t.Fatalf("merkle root %s", got)
	}
	branch := MerkleBranch(txids[1:])
	if len(branch) != 2 || branch[0] != txids[1] {
		t.Fatalf("branch %v", branch)
	}
	if got := RootFromBranch(txids[0], branch); got != root {
		t.Fatalf("root from branch %s", got)
	}
	h := Header{
		Version:    1,
		PrevBlock:  mustHash(t, "00000000000008a3a41b85b8b29ad444def299fee21793cd8b9e567eab02cd81"),
		MerkleRoot: root,
		Time:       1305998791,
		Bits:       0x1a44b9f2,
		Nonce:      2504433986,
	}
	hash := h.Hash()
	if hash.String() != "00000000000000001e8d6829a8a21adc5d38d0a473b144b6765798e61f98bd1d" {
		t.Fatalf("block hash %s", hash)
	}
	target, _ := CompactToBig(h.Bits)
	if HashToBig(hash).Cmp(target) > 0 {
		t.Fatal("block 125552 does not meet its own target")
	}
	tgt := TargetFromBig(target)
	if !tgt.Meets(&hash) {
		t.Fatal("Target.Meets disagrees with big.Int compare")
	}
	// Stratum's prevhash: display hex split into 8-char words, word order reversed.
	sp := StratumPrevHash(h.PrevBlock)
	if sp != wordsReversed("00000000000008a3a41b85b8b29ad444def299fee21793cd8b9e567eab02cd81") {
		t.Fatalf("stratum prevhash %s", sp)
	}
	if back, err := ParseStratumPrevHash(sp); err != nil || back != h.PrevBlock {
		t.Fatalf("prevhash round trip %s %v", back, err)
	}
}

func wordsReversed(display string) string {
	var out string
	for i := 56; i >= 0; i -= 8 {
		out += display[i : i+8]
	}
	return out
}

func TestMerkleBranchAgainstRoot(t *testing.T) {
	for n := 1; n <= 17; n++ {
		txids := make([]Hash, n)
		for i := range txids {
			txids[i] = DoubleSHA256([]byte{byte(i), byte(n)})
		}
		if got := RootFromBranch(txids[0], MerkleBranch(txids[1:])); got != MerkleRoot(txids) {
			t.Fatalf("n=%d: branch root %s != merkle root %s", n, got, MerkleRoot(txids))
		}
	}
}

func TestCompact(t *testing.T) {
	cases := []struct {
		bits   uint32
		target string
		diff   float64
	}{
		{0x1d00ffff, "ffff0000000000000000000000000000000000000000000000000000", 1},
		{0x207fffff, "7fffff0000000000000000000000000000000000000000000000000000000000", 4.6565423739069247e-10},
		{0x1a44b9f2, "44b9f20000000000000000000000000000000000000000000000", 244112.48777434},
	}
	for _, c := range cases {
		tg, err := CompactToBig(c.bits)
		if err != nil {
			t.Fatal(err)
		}
		if got := tg.Text(16); got != c.target {
			t.Errorf("%08x: target %s want %s", c.bits, got, c.target)
		}
		if got := BigToCompact(tg); got != c.bits {
			t.Errorf("%08x: round trip gives %08x", c.bits, got)
		}
		d := TargetToDifficulty(tg)
		if rel := (d - c.diff) / c.diff; rel > 1e-9 || rel < -1e-9 {
			t.Errorf("%08x: difficulty %.10g want %.10g", c.bits, d, c.diff)
		}
	}
	if _, err := CompactToBig(0x04923456); err == nil {
		t.Error("negative nbits accepted")
	}
	if _, err := CompactToBig(0xff123456); err == nil {
		t.Error("overflowing nbits accepted")
	}
}

func TestFractionalDifficulty(t *testing.T) {
	tg, err := DifficultyToTarget(0.0001)
	if err != nil {
		t.Fatal(err)
	}
	want := new(big.Int).Mul(Diff1Target(), big.NewInt(10000))
	if tg.Cmp(want) != 0 {
		t.Fatalf("target(0.0001) = %x want %x", tg, want)
	}
	if d := TargetToDifficulty(tg); d < 0.0000999999 || d > 0.0001000001 {
		t.Fatalf("difficulty back %v", d)
	}
	one, _ := DifficultyToTarget(1)
	if one.Cmp(Diff1Target()) != 0 {
		t.Fatalf("target(1) = %x", one)
	}
	for _, bad := range []float64{0, -1} {
		if _, err := DifficultyToTarget(bad); err == nil {
			t.Errorf("difficulty %v accepted", bad)
		}
	}
}

func TestCoinbase(t *testing.T) {
	out := wire.NewTxOut(5000000000, []byte{0x51})
	for _, height := range []int64{0, 1, 16, 17, 128, 125552, 840000} {
		c1, c2, err := BuildCoinbase(CoinbaseParams{Height: height, ExtranonceSize: 8, Tag: []byte("/powcoord/"), Outputs: []*wire.TxOut{out}, WitnessCommitment: bytes.Repeat([]byte{7}, 32)})
		if err != nil {
			t.Fatal(err)
		}
		raw := append(append(append([]byte{}, c1...), bytes.Repeat([]byte{0xab}, 8)...), c2...)
		var tx wire.MsgTx
		if err := tx.DeserializeNoWitness(bytes.NewReader(raw)); err != nil {
			t.Fatalf("height %d: coinbase does not parse: %v", height, err)
		}
		got, err := ParseCoinbaseHeight(tx.TxIn[0].SignatureScript)
		if err != nil || got != height {
			t.Fatalf("height %d: parsed %d %v", height, got, err)
		}
		if !bytes.Contains(tx.TxIn[0].SignatureScript, bytes.Repeat([]byte{0xab}, 8)) {
			t.Fatal("extranonce not inside scriptSig")
		}
		if len(tx.TxOut) != 2 || tx.TxOut[1].PkScript[0] != 0x6a || !bytes.Equal(tx.TxOut[1].PkScript[2:6], WitnessMagic) {
			t.Fatalf("commitment output %x", tx.TxOut[1].PkScript)
		}
	}
	// Height 1 is OP_1; 17 is a one-byte push (minimal encoding).
	c1, _, _ := BuildCoinbase(CoinbaseParams{Height: 1, ExtranonceSize: 8, Outputs: []*wire.TxOut{out}})
	if c1[42] != 0x51 {
		t.Fatalf("height 1 encoded as %x", c1[42:])
	}
	c1, _, _ = BuildCoinbase(CoinbaseParams{Height: 17, ExtranonceSize: 8, Outputs: []*wire.TxOut{out}})
	if !bytes.Equal(c1[42:44], []byte{0x01, 0x11}) {
		t.Fatalf("height 17 encoded as %x", c1[42:])
	}
	if _, _, err := BuildCoinbase(CoinbaseParams{Height: 1, ExtranonceSize: 8, Tag: bytes.Repeat([]byte("x"), 95), Outputs: []*wire.TxOut{out}}); err == nil {
		t.Fatal("oversized scriptSig accepted")
	}
}

func TestWitnessCommitmentFormsAgree(t *testing.T) {
	c := WitnessCommitment([]Hash{DoubleSHA256([]byte("a"))})
	full, err := CommitmentScript(c[:])
	if err != nil {
		t.Fatal(err)
	}
	again, err := CommitmentScript(full)
	if err != nil || !bytes.Equal(full, again) {
		t.Fatalf("full script form not accepted: %v", err)
	}
	if _, err := CommitmentScript([]byte{1, 2, 3}); err == nil {
		t.Fatal("garbage commitment accepted")
	}
}

// HashDifficulty (float64) agrees with the exact big-number quotient.
func TestHashDifficulty(t *testing.T) {
	for i := range 200 {
		h := DoubleSHA256([]byte{byte(i), byte(i >> 8)})
		// Shift some hashes down so small and large values are covered.
		for j := 31; j >= 32-(i%32); j-- {
			h[j] = 0
		}
		want := TargetToDifficulty(HashToBig(h))
		got := HashDifficulty(h)
		if rel := (got - want) / want; rel > 1e-12 || rel < -1e-12 {
			t.Fatalf("hash %s: %v, exact %v", h, got, want)
		}
	}
	var block125552 Hash
	block125552, _ = HashFromDisplay("00000000000000001e8d6829a8a21adc5d38d0a473b144b6765798e61f98bd1d")
	if d := HashDifficulty(block125552); d < 244112.48777434 {
		t.Fatalf("block 125552 achieves %v, below its own target's difficulty", d)
	}
	if n := testing.AllocsPerRun(100, func() { HashDifficulty(block125552) }); n != 0 {
		t.Fatalf("%v allocations per call", n)
	}
}

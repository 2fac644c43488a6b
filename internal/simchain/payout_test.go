package simchain

import (
	"bytes"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/address/v2"
	"github.com/btcsuite/btcd/chaincfg/v2"
)

func TestPayoutScript(t *testing.T) {
	hash160 := bytes.Repeat([]byte{0x42}, 20)
	wpkh, err := address.NewAddressWitnessPubKeyHash(hash160, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	pkh, err := address.NewAddressPubKeyHash(hash160, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	mainWPKH, _ := address.NewAddressWitnessPubKeyHash(hash160, &chaincfg.MainNetParams)
	if !strings.HasPrefix(wpkh.EncodeAddress(), "bcrt1q") {
		t.Fatalf("regtest address %s", wpkh.EncodeAddress())
	}
	p2wpkh := append([]byte{0x00, 0x14}, hash160...)
	p2pkh := slicesConcat([]byte{0x76, 0xa9, 0x14}, hash160, []byte{0x88, 0xac})
	long := strings.Repeat("w", 100)
	cases := []struct {
		user string
		want []byte
	}{
		{wpkh.EncodeAddress(), p2wpkh},
		{wpkh.EncodeAddress() + ".rig1", p2wpkh},
		{pkh.EncodeAddress() + ".a.b", p2pkh},
		{"alice.rig1", append([]byte{0x6a, 19}, "powcoord:alice.rig1"...)},
		// A mainnet address is not paid to on the embedded (regtest-like) chain.
		{mainWPKH.EncodeAddress(), append([]byte{0x6a, byte(9 + 42)}, ("powcoord:" + mainWPKH.EncodeAddress())...)},
		// 9 + 100 bytes is cut to 80 bytes of data: OP_RETURN OP_PUSHDATA1 80.
		{long, append([]byte{0x6a, 0x4c, 80}, ("powcoord:" + long[:71])...)},
		// A multi-byte character straddling byte 80 is dropped whole.
		{strings.Repeat("x", 70) + "é", append([]byte{0x6a, 0x4c, 79}, ("powcoord:" + strings.Repeat("x", 70))...)},
	}
	for _, c := range cases {
		got, err := PayoutScript(c.user)
		if err != nil {
			t.Errorf("%q: %v", c.user, err)
			continue
		}
		if !bytes.Equal(got, c.want) {
			t.Errorf("%q:\n got %x\nwant %x", c.user, got, c.want)
		}
	}
	if _, err := PayoutScript(""); err == nil {
		t.Error("empty user accepted")
	}
}

func slicesConcat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

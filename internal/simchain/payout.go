package simchain

import (
	"errors"
	"unicode/utf8"

	"github.com/btcsuite/btcd/address/v2"
	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/txscript/v2"

	"github.com/powcoord/powcoord/internal/ledger"
)

// opReturnPrefix starts the OP_RETURN data of a coinbase paid to a worker
// name that is not an address.
const opReturnPrefix = "powcoord:"

// maxOpReturnData is the most data a standard OP_RETURN output carries.
const maxOpReturnData = 80

// PayoutScript returns the coinbase output script crediting user. When the
// part of user before the first '.' is a regtest address, the script pays
// that address; otherwise it is an OP_RETURN carrying "powcoord:"+user,
// cut at a character boundary to fit 80 bytes.
func (c *Chain) PayoutScript(user string) ([]byte, error) { return PayoutScript(user) }

// PayoutScript is Chain.PayoutScript without a chain.
func PayoutScript(user string) ([]byte, error) {
	if user == "" {
		return nil, errors.New("simchain: payout: empty user name")
	}
	addrPart := ledger.AccountOf(user)
	if addr, err := address.DecodeAddress(addrPart, &chaincfg.RegressionNetParams); err == nil &&
		addr.IsForNet(&chaincfg.RegressionNetParams) {
		if script, err := txscript.PayToAddrScript(addr); err == nil {
			return script, nil
		}
	}
	data := opReturnPrefix + user
	if len(data) > maxOpReturnData {
		data = data[:maxOpReturnData]
		for !utf8.ValidString(data) {
			data = data[:len(data)-1]
		}
	}
	return txscript.NullDataScript([]byte(data))
}

package node

import (
	"fmt"
	"sort"
	"strings"

	"github.com/btcsuite/btcd/address/v2"
	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/txscript/v2"
)

// networks maps the names accepted by --network to their parameters.
var networks = map[string]*chaincfg.Params{
	"mainnet":  &chaincfg.MainNetParams,
	"testnet3": &chaincfg.TestNet3Params,
	"testnet4": &chaincfg.TestNet4Params,
	"signet":   &chaincfg.SigNetParams,
	"regtest":  &chaincfg.RegressionNetParams,
	"simnet":   &chaincfg.SimNetParams,
}

// Networks returns the accepted network names, sorted.
func Networks() []string {
	names := make([]string, 0, len(networks))
	for n := range networks {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// NetworkParams returns the chain parameters for a network name
// ("mainnet", "testnet3", "testnet4", "signet", "regtest", "simnet").
func NetworkParams(name string) (*chaincfg.Params, error) {
	p, ok := networks[strings.ToLower(strings.TrimSpace(name))]
	if !ok {
		return nil, fmt.Errorf("network %q: unknown (want one of %s)", name, strings.Join(Networks(), ", "))
	}
	return p, nil
}

// AddressScript decodes addr for the network and returns its output
// script. P2PKH, P2SH, P2WPKH, P2WSH and P2TR addresses are accepted.
func AddressScript(addr, network string) ([]byte, error) {
	params, err := NetworkParams(network)
	if err != nil {
		return nil, err
	}
	return addressScript(addr, network, params)
}

func addressScript(addr, network string, params *chaincfg.Params) ([]byte, error) {
	a, err := address.DecodeAddress(addr, params)
	if err != nil {
		return nil, fmt.Errorf("address %q: not a valid %s address: %v", addr, network, err)
	}
	switch a.(type) {
	case *address.AddressPubKeyHash, *address.AddressScriptHash,
		*address.AddressWitnessPubKeyHash, *address.AddressWitnessScriptHash,
		*address.AddressTaproot:
	default:
		return nil, fmt.Errorf("address %q: type %T cannot receive a coinbase here (want P2PKH, P2SH, P2WPKH, P2WSH or P2TR)", addr, a)
	}
	if !a.IsForNet(params) {
		return nil, fmt.Errorf("address %q: belongs to another network than %s", addr, network)
	}
	script, err := txscript.PayToAddrScript(a)
	if err != nil {
		return nil, fmt.Errorf("address %q: %v", addr, err)
	}
	return script, nil
}

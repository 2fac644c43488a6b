package sv2

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/btcsuite/btcd/btcec/v2"
)

// LoadOrCreateAuthorityKey reads the pool authority's private key from
// path (64 hex digits and a newline), or, when the file does not exist,
// generates a key and writes it there with mode 0600. created says which.
func LoadOrCreateAuthorityKey(path string) (key *btcec.PrivateKey, created bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, err := btcec.NewPrivateKey()
		if err != nil {
			return nil, false, fmt.Errorf("authority key: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, false, fmt.Errorf("authority key %s: %w", path, err)
		}
		_, werr := fmt.Fprintf(f, "%x\n", key.Serialize())
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			os.Remove(path)
			return nil, false, fmt.Errorf("authority key %s: %w", path, werr)
		}
		return key, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("authority key %s: %w", path, err)
	}
	s := strings.TrimSpace(string(b))
	raw, err := hex.DecodeString(s)
	if err != nil || len(raw) != 32 {
		return nil, false, fmt.Errorf("authority key %s: want 64 hex digits, have %d characters", path, len(s))
	}
	key, _ = btcec.PrivKeyFromBytes(raw)
	if key.Key.IsZero() {
		return nil, false, fmt.Errorf("authority key %s: the zero key", path)
	}
	return key, false, nil
}

// URL returns the stratum2+tcp URL miners enter for a pool at hostport
// with this authority key.
func URL(hostport string, authority [32]byte) string {
	return "stratum2+tcp://" + hostport + "/" + EncodeAuthorityKey(authority)
}

package node

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/go-zeromq/zmq4"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/work"
)

func TestAddressScript(t *testing.T) {
	cases := []struct {
		network, addr, script string
	}{
		// BIP 173 / BIP 350 vectors and well-known addresses.
		{"mainnet", "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", "0014751e76e8199196d454941c45d1b3a323f1433bd6"},
		{"testnet3", "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7", "00201863143c14c5166804bd19203356da136c985678cd4d27a1b8c6329604903262"},
		{"testnet4", "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7", "00201863143c14c5166804bd19203356da136c985678cd4d27a1b8c6329604903262"},
		{"signet", "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7", "00201863143c14c5166804bd19203356da136c985678cd4d27a1b8c6329604903262"},
		{"mainnet", "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0", "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"},
		{"mainnet", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", "76a91477bff20c60e522dfaa3350c39b030a5d004e839a88ac"},
		{"mainnet", "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", "a914b472a266d0bd89c13706a4132ccfb16f7c3b9fcb87"},
		{"regtest", "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080", "0014751e76e8199196d454941c45d1b3a323f1433bd6"},
	}
	for _, c := range cases {
		got, err := AddressScript(c.addr, c.network)
		if err != nil {
			t.Errorf("%s on %s: %v", c.addr, c.network, err)
			continue
		}
		if hex.EncodeToString(got) != c.script {
			t.Errorf("%s on %s: script %x, want %s", c.addr, c.network, got, c.script)
		}
	}
	bad := []struct{ network, addr, want string }{
		{"regtest", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", `address "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"`},
		{"mainnet", "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7", "another network than mainnet"},
		{"mainnet", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3", "not a valid mainnet address"},
		{"mainnet", "worker1", `address "worker1"`},
		{"mainnet", "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798", "cannot receive a coinbase"},
		{"lunanet", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", `network "lunanet": unknown`},
	}
	for _, c := range bad {
		_, err := AddressScript(c.addr, c.network)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s on %s: error %v, want one containing %q", c.addr, c.network, err, c.want)
		}
	}
}

func TestPayoutScript(t *testing.T) {
	s := &Source{cfg: Config{Network: "mainnet"}, params: networks["mainnet"]}
	if _, err := s.PayoutScript("alice"); err == nil || !strings.Contains(err.Error(), `worker "alice"`) {
		t.Fatalf("no payout address, worker alice: %v", err)
	}
	got, err := s.PayoutScript("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4.rig7")
	if err != nil || hex.EncodeToString(got) != "0014751e76e8199196d454941c45d1b3a323f1433bd6" {
		t.Fatalf("solo worker: %x %v", got, err)
	}
	s.payout, _ = AddressScript("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", "mainnet")
	got, err = s.PayoutScript("alice.rig1")
	if err != nil || hex.EncodeToString(got) != "76a91477bff20c60e522dfaa3350c39b030a5d004e839a88ac" {
		t.Fatalf("pool worker: %x %v", got, err)
	}
}

// coreTemplate builds a getblocktemplate answer in Bitcoin Core's shape
// (full commitment script, version with BIP 9 bits) holding tx.
func coreTemplate(t *testing.T, tx *wire.MsgTx, commitment string) json.RawMessage {
	var buf bytes.Buffer
	tx.Serialize(&buf)
	g := map[string]any{
		"version":           0x20000000,
		"previousblockhash": "000000000000000000026b8d2e0e7c4a7a2b1f4b6f8d2c3b4a5968778695a4b3",
		"transactions": []map[string]any{{
			"data": hex.EncodeToString(buf.Bytes()), "txid": tx.TxHash().String(), "hash": tx.WitnessHash().String(),
			"depends": []int{}, "fee": 1000, "sigops": 1, "weight": 500,
		}},
		"coinbasevalue":              312501000,
		"longpollid":                 "000000000000000000026b8d2e0e7c4a7a2b1f4b6f8d2c3b4a5968778695a4b3123",
		"target":                     "00000000000000000002f1280000000000000000000000000000000000000000",
		"mintime":                    1700000000,
		"curtime":                    1700000600,
		"bits":                       "17034219",
		"height":                     820000,
		"default_witness_commitment": commitment,
		"rules":                      []string{"csv", "!segwit", "taproot"},
	}
	raw, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func witnessTx() *wire.MsgTx {
	tx := wire.NewMsgTx(2)
	prev := wire.OutPoint{Index: 3}
	prev.Hash[0] = 0x42
	in := wire.NewTxIn(&prev, nil, wire.TxWitness{bytes.Repeat([]byte{0x30}, 71), bytes.Repeat([]byte{0x02}, 33)})
	tx.AddTxIn(in)
	tx.AddTxOut(wire.NewTxOut(12345, append([]byte{0x00, 0x14}, bytes.Repeat([]byte{0x11}, 20)...)))
	return tx
}

func TestParseTemplateCoreShape(t *testing.T) {
	tx := witnessTx()
	commit := chainmath.WitnessCommitment([]chainmath.Hash{chainmath.Hash(tx.WitnessHash())})
	script := "6a24aa21a9ed" + hex.EncodeToString(commit[:])
	now := time.Unix(1700000601, 0)
	tmpl, lpid, err := parseTemplate(coreTemplate(t, tx, script), now)
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.Height != 820000 || tmpl.Version != 0x20000000 || tmpl.Bits != 0x17034219 ||
		tmpl.CurTime != 1700000600 || tmpl.MinTime != 1700000000 || tmpl.CoinbaseValue != 312501000 || !tmpl.Created.Equal(now) {
		t.Fatalf("template %+v", tmpl)
	}
	if tmpl.PrevHash.String() != "000000000000000000026b8d2e0e7c4a7a2b1f4b6f8d2c3b4a5968778695a4b3" || tmpl.PrevHash[31] != 0 || tmpl.PrevHash[0] != 0xb3 {
		t.Fatalf("prev hash %s (internal %x)", tmpl.PrevHash, tmpl.PrevHash[:])
	}
	if hex.EncodeToString(tmpl.WitnessCommitment) != script {
		t.Fatalf("commitment %x, want Core's script %s", tmpl.WitnessCommitment, script)
	}
	if len(tmpl.Txs) != 1 || tmpl.Txs[0].TxID != chainmath.Hash(tx.TxHash()) || tmpl.Txs[0].WTxID != chainmath.Hash(tx.WitnessHash()) {
		t.Fatalf("txs %+v", tmpl.Txs)
	}
	if lpid != "000000000000000000026b8d2e0e7c4a7a2b1f4b6f8d2c3b4a5968778695a4b3123" {
		t.Fatalf("longpollid %q", lpid)
	}

	// btcd's bare form parses too.
	if tmpl, _, err := parseTemplate(coreTemplate(t, tx, hex.EncodeToString(commit[:])), now); err != nil || !bytes.Equal(tmpl.WitnessCommitment, commit[:]) {
		t.Fatalf("bare commitment: %x %v", tmpl.WitnessCommitment, err)
	}
}

func TestParseTemplateErrors(t *testing.T) {
	tx := witnessTx()
	commit := chainmath.WitnessCommitment([]chainmath.Hash{chainmath.Hash(tx.WitnessHash())})
	good := coreTemplate(t, tx, hex.EncodeToString(commit[:]))
	edit := func(f func(m map[string]any)) json.RawMessage {
		var m map[string]any
		json.Unmarshal(good, &m)
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	cases := []struct {
		name string
		raw  json.RawMessage
		want string
	}{
		{"no coinbasevalue", edit(func(m map[string]any) { delete(m, "coinbasevalue") }), "no coinbasevalue"},
		{"bad bits", edit(func(m map[string]any) { m["bits"] = "xyz" }), `bits "xyz"`},
		{"bad prev", edit(func(m map[string]any) { m["previousblockhash"] = "00" }), `previousblockhash: hash "00"`},
		{"wrong commitment", edit(func(m map[string]any) { m["default_witness_commitment"] = strings.Repeat("ab", 32) }), "does not match the template's transactions"},
		{"missing commitment", edit(func(m map[string]any) { delete(m, "default_witness_commitment") }), "no default_witness_commitment"},
		{"wrong txid", edit(func(m map[string]any) {
			m["transactions"].([]any)[0].(map[string]any)["txid"] = strings.Repeat("0", 64)
		}), "transaction 0: txid 0000"},
		{"bad data", edit(func(m map[string]any) { m["transactions"].([]any)[0].(map[string]any)["data"] = "0100" }), "transaction 0: data 0100"},
		{"mintime after curtime", edit(func(m map[string]any) { m["mintime"] = 1800000000 }), "mintime 1800000000 after curtime"},
		{"not an object", json.RawMessage(`"busy"`), "getblocktemplate answer"},
	}
	for _, c := range cases {
		_, _, err := parseTemplate(c.raw, time.Now())
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
}

// TestCookieAuth checks that the cookie file is read at every call, as
// Bitcoin Core rewrites it when it restarts. The HTTP server stands in
// for the node only to see the credentials.
func TestCookieAuth(t *testing.T) {
	cookie := filepath.Join(t.TempDir(), ".cookie")
	want := "__cookie__:first"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, _ := r.BasicAuth()
		body, _ := io.ReadAll(r.Body)
		if u+":"+p != want {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var req struct {
			ID     uint64 `json:"id"`
			Method string `json:"method"`
		}
		json.Unmarshal(body, &req)
		if req.Method == "fail" {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, `{"result":null,"error":{"code":-8,"message":"Block height out of range"},"id":%d}`, req.ID)
			return
		}
		fmt.Fprintf(w, `{"result":%q,"error":null,"id":%d}`, req.Method, req.ID)
	}))
	defer srv.Close()
	if err := os.WriteFile(cookie, []byte("__cookie__:first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(ClientConfig{URL: srv.URL, User: "ignored", Pass: "ignored", CookieFile: cookie})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got string
	if err := c.Call(t.Context(), "getbestblockhash", nil, &got); err != nil || got != "getbestblockhash" {
		t.Fatalf("call with cookie: %q %v", got, err)
	}
	want = "__cookie__:second"
	err = c.Call(t.Context(), "getbestblockhash", nil, &got)
	if err == nil || !strings.Contains(err.Error(), "wrong RPC user/password or cookie") || !strings.Contains(err.Error(), "getbestblockhash") {
		t.Fatalf("stale cookie: %v", err)
	}
	os.WriteFile(cookie, []byte(want), 0o600)
	if err := c.Call(t.Context(), "getbestblockhash", nil, &got); err != nil {
		t.Fatalf("rewritten cookie: %v", err)
	}
	err = c.Call(t.Context(), "fail", nil, nil)
	if rerr, ok := err.(*RPCError); !ok || rerr.Code != -8 || rerr.Message != "Block height out of range" || rerr.Method != "fail" {
		t.Fatalf("HTTP 500 with a JSON-RPC error: %#v", err)
	}
	os.Remove(cookie)
	if err := c.Call(t.Context(), "x", nil, nil); err == nil || !strings.Contains(err.Error(), "cookie file") {
		t.Fatalf("missing cookie: %v", err)
	}
}

func TestNewClientErrors(t *testing.T) {
	for _, u := range []string{"", "ftp://x:1", "http://host", "http://[::1"} {
		if _, err := NewClient(ClientConfig{URL: u}); err == nil {
			t.Errorf("URL %q accepted", u)
		}
	}
	c, err := NewClient(ClientConfig{URL: "http://u:p@127.0.0.1:8332"})
	if err != nil || c.user != "u" || c.pass != "p" || c.Endpoint() != "127.0.0.1:8332" || strings.Contains(c.endpoint, "u:p") {
		t.Fatalf("credentials in URL: %+v %v", c, err)
	}
}

func TestStaleAfterMaxStale(t *testing.T) {
	now := time.Unix(1700000000, 0)
	s := &Source{
		cfg:     Config{Network: "regtest", MaxStale: time.Minute},
		now:     func() time.Time { return now },
		clients: []*Client{{display: "127.0.0.1:18443"}},
		tmpl:    &work.Template{Height: 5, Bits: 0x207fffff, Created: now},
		healthy: true,
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	s.lastFetch = now
	if s.Stale() || !s.Status().Healthy {
		t.Fatal("a fresh source is stale")
	}
	s.markDown(fmt.Errorf("connection refused"))
	now = now.Add(59 * time.Second)
	st := s.Status()
	if s.Stale() || st.Stale || st.Healthy || !strings.Contains(st.Error, "no node has answered for 59s; mining on the last template: connection refused") {
		t.Fatalf("down 59 s: stale %v, status %+v", s.Stale(), st)
	}
	now = now.Add(2 * time.Second)
	st = s.Status()
	if !s.Stale() || !st.Stale || !strings.Contains(st.Error, "no node has answered for 1m1s (over 1m0s): the last template is stale") {
		t.Fatalf("down 61 s: stale %v, status %+v", s.Stale(), st)
	}
	if st.TipHeight != 4 || st.Endpoint != "127.0.0.1:18443" || st.Kind != "node" || !st.LastUpdate.Equal(time.Unix(1700000000, 0)) {
		t.Fatalf("status %+v", st)
	}
}

// TestZMQHashblock publishes Bitcoin Core's hashblock notification from a
// real ZMQ publisher on loopback and checks that the source asks for a
// fresh template.
func TestZMQHashblock(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pub := zmq4.NewPub(ctx)
	defer pub.Close()
	if err := pub.Listen("tcp://127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	endpoint := "tcp://" + pub.Addr().String()
	s := &Source{
		cfg:  Config{PollInterval: 50 * time.Millisecond},
		kick: make(chan struct{}, 1),
		log:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	loop, err := s.zmqLoop(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		loop(ctx)
	}()
	defer func() { cancel(); <-done }()

	hash := bytes.Repeat([]byte{0xab}, 32)
	other := zmq4.NewMsgFrom([]byte("rawtx"), []byte{1, 2, 3}, []byte{0, 0, 0, 0})
	msg := zmq4.NewMsgFrom([]byte("hashblock"), hash, []byte{7, 0, 0, 0})
	// A subscriber misses what is published before it has joined, so
	// publish until the source reacts (bounded by the deadline).
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		if err := pub.Send(other); err != nil {
			t.Fatal(err)
		}
		select {
		case <-s.kick:
			t.Fatal("a rawtx notification asked for a template")
		default:
		}
		if err := pub.Send(msg); err != nil {
			t.Fatal(err)
		}
		select {
		case <-s.kick:
			return
		case <-tick.C:
		case <-deadline:
			t.Fatal("no template request within 10 s of hashblock notifications")
		}
	}
}

func TestZMQEndpointErrors(t *testing.T) {
	s := &Source{}
	for _, e := range []string{"127.0.0.1:28332", "ipc:///tmp/x", "tcp://host"} {
		if _, err := s.zmqLoop(e); err == nil || !strings.Contains(err.Error(), e) {
			t.Errorf("endpoint %q: %v", e, err)
		}
	}
}

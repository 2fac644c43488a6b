// Package nodetest starts a real btcd node for tests (regtest or simnet on
// loopback, in a temporary directory) and mines blocks on a work.Source
// the way a pool and its miner would, without a Stratum server between.
package nodetest

import (
	"context"
	"encoding/hex"
	"github.com/powcoord/powcoord/internal/gotool"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/node"
)

// BtcdPath returns the path of the btcd binary pinned in go.mod as a tool
// (`go tool -n btcd`), building it on first use.
func BtcdPath() (string, error) { return gotool.Path("btcd") }

// Btcd is a running btcd process.
type Btcd struct {
	// URL is the RPC address (http://127.0.0.1:port), User and Pass its
	// credentials.
	URL, User, Pass string
	// Network is "regtest" or "simnet".
	Network string
	// Dir holds the node's data, logs and captured output.
	Dir string

	t      testing.TB
	bin    string
	args   []string
	mu     sync.Mutex
	cmd    *exec.Cmd
	waited chan struct{}
	client *node.Client
}

// StartBtcd starts btcd on network ("regtest" or "simnet") with RPC on a
// free loopback port and no P2P listener, waits until its RPC answers, and
// stops it when the test ends. It skips the test when btcd cannot be
// built.
func StartBtcd(t testing.TB, network string) *Btcd {
	t.Helper()
	bin, err := BtcdPath()
	if err != nil {
		t.Skipf("btcd is not available, skipping the real-node test: %v", err)
	}
	var netFlag string
	switch network {
	case "regtest":
		netFlag = "--regtest"
	case "simnet":
		netFlag = "--simnet"
	default:
		t.Fatalf("StartBtcd: network %q: want regtest or simnet", network)
	}
	port, err := freePort()
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	dir := t.TempDir()
	b := &Btcd{
		URL:     "http://127.0.0.1:" + strconv.Itoa(port),
		User:    "powcoord",
		Pass:    "test-password",
		Network: network,
		Dir:     dir,
		t:       t,
		bin:     bin,
	}
	b.args = []string{
		netFlag, "--notls", "--nolisten", "--nodnsseed",
		"--rpclisten=127.0.0.1:" + strconv.Itoa(port),
		"--rpcuser=" + b.User, "--rpcpass=" + b.Pass,
		"--datadir=" + filepath.Join(dir, "data"),
		"--logdir=" + filepath.Join(dir, "logs"),
		"--debuglevel=info",
	}
	b.client, err = node.NewClient(node.ClientConfig{URL: b.URL, User: b.User, Pass: b.Pass, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Kill)
	b.Start()
	return b
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Start starts the process (again, after Kill) with the same ports and
// data directory and waits until its RPC answers. On regtest btcd starts
// a fresh chain every time; simnet keeps it.
func (b *Btcd) Start() {
	b.t.Helper()
	b.mu.Lock()
	if b.cmd != nil {
		b.mu.Unlock()
		b.t.Fatal("btcd is already running")
	}
	out, err := os.OpenFile(filepath.Join(b.Dir, "btcd.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		b.mu.Unlock()
		b.t.Fatal(err)
	}
	cmd := exec.Command(b.bin, b.args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		b.mu.Unlock()
		b.t.Fatalf("starting btcd: %v", err)
	}
	waited := make(chan struct{})
	go func() {
		cmd.Wait()
		out.Close()
		close(waited)
	}()
	b.cmd, b.waited = cmd, waited
	b.mu.Unlock()

	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int64
		err := b.Call(context.Background(), "getblockcount", nil, &n)
		if err == nil {
			return
		}
		select {
		case <-waited:
			b.t.Fatalf("btcd exited at start: %s", b.tail())
		default:
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("btcd RPC did not answer within 30 s: %v\n%s", err, b.tail())
		}
		time.Sleep(50 * time.Millisecond) // polling a process with a deadline
	}
}

// Kill stops the process at once (SIGKILL) and waits for it to exit.
// btcd writes its chain to disk only every few minutes and when it shuts
// down, so a simnet node killed this way comes back without the blocks of
// its last minutes (as a crashed node would); Stop keeps them.
func (b *Btcd) Kill() {
	b.stop(false)
}

// Stop shuts the process down cleanly (an interrupt, as Ctrl-C would) so
// that it writes its chain to disk, and waits for it to exit; it kills
// it after 30 s, or at once where an interrupt cannot be sent (Windows).
func (b *Btcd) Stop() {
	b.stop(true)
}

// Restart stops the process cleanly and starts it again on the same ports
// and data directory.
func (b *Btcd) Restart() {
	b.t.Helper()
	b.Stop()
	b.Start()
}

func (b *Btcd) stop(clean bool) {
	b.mu.Lock()
	cmd, waited := b.cmd, b.waited
	b.cmd = nil
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	if clean && cmd.Process.Signal(os.Interrupt) == nil {
		select {
		case <-waited:
		case <-time.After(30 * time.Second):
			b.t.Logf("btcd did not stop within 30 s of an interrupt: killing it")
		}
	}
	cmd.Process.Kill() // an error once it has exited: nothing to do
	<-waited
	b.client.Close()
}

// tail returns the end of the node's output, for failure messages.
func (b *Btcd) tail() string {
	data, _ := os.ReadFile(filepath.Join(b.Dir, "btcd.out"))
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return string(data)
}

// Call invokes an RPC method on the node.
func (b *Btcd) Call(ctx context.Context, method string, params []any, result any) error {
	return b.client.Call(ctx, method, params, result)
}

// BestBlockHash returns the node's tip (display hex).
func (b *Btcd) BestBlockHash(ctx context.Context) (string, error) {
	var h string
	err := b.Call(ctx, "getbestblockhash", nil, &h)
	return h, err
}

// BlockCount returns the node's tip height.
func (b *Btcd) BlockCount(ctx context.Context) (int64, error) {
	var n int64
	err := b.Call(ctx, "getblockcount", nil, &n)
	return n, err
}

// RawBlock fetches a block (with witness) by display hash.
func (b *Btcd) RawBlock(ctx context.Context, hash string) ([]byte, error) {
	var hexBlock string
	if err := b.Call(ctx, "getblock", []any{hash, 0}, &hexBlock); err != nil {
		return nil, err
	}
	return hex.DecodeString(hexBlock)
}

// BlockHash returns the hash of the block at height on the node's chain.
func (b *Btcd) BlockHash(ctx context.Context, height int64) (string, error) {
	var h string
	err := b.Call(ctx, "getblockhash", []any{height}, &h)
	return h, err
}

package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/listen"
	"github.com/powcoord/powcoord/internal/sv2"
)

// haproxyOrSkip returns the haproxy binary, skipping the test when there
// is none, unless POWCOORD_REQUIRE_HAPROXY is set (CI installs it).
func haproxyOrSkip(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("haproxy")
	if err == nil && runtime.GOOS == "linux" {
		return path
	}
	if os.Getenv("POWCOORD_REQUIRE_HAPROXY") != "" {
		t.Fatalf("POWCOORD_REQUIRE_HAPROXY is set but haproxy cannot run here (%s, %v): apt-get install haproxy", runtime.GOOS, err)
	}
	t.Skipf("needs haproxy on Linux (apt-get install haproxy; %s, %v); set POWCOORD_REQUIRE_HAPROXY to fail instead", runtime.GOOS, err)
	return ""
}

// freePort returns a loopback port free at the moment of the call.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestHAProxySendsClientAddress puts Debian's HAProxy in front of every
// Stratum listener of `powcoord coordinator` (V1, V1 over TLS, V2), once
// with send-proxy (v1) and once with send-proxy-v2, with
// --proxy-protocol-from 127.0.0.1 (HAProxy's address). Each miner
// connects to HAProxy from an address of its own (127.0.0.11 and up):
// GET /api/status shows each worker with the miner's address and port,
// not HAProxy's. A miner that sends a PROXY header itself, straight to the
// coordinator from an address not on the list, is refused.
func TestHAProxySendsClientAddress(t *testing.T) {
	haproxy := haproxyOrSkip(t)
	dir := t.TempDir()
	certFile, keyFile, pool := writeSelfSigned(t, dir)
	f := testFlags(filepath.Join(dir, "data"))
	f.listen.TLS, f.listen.TLSCert, f.listen.TLSKey = "127.0.0.1:0", certFile, keyFile
	f.listen.V2 = "127.0.0.1:0"
	f.listen.HandshakeTimeout, f.listen.IdleTimeout = 30*time.Second, time.Minute
	f.listen.ProxyFrom = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inst, err := startCoordinator(ctx, f, quietLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); <-inst.done }()

	type route struct {
		name, kind, send string // kind: v1, tls, v2; send: HAProxy's server option
		backend          net.Addr
		port             int
	}
	var routes []*route
	for _, send := range []string{"send-proxy", "send-proxy-v2"} {
		for _, r := range []struct {
			kind string
			ln   net.Listener
		}{{"v1", inst.lns.V1}, {"tls", inst.lns.TLS}, {"v2", inst.lns.V2}} {
			routes = append(routes, &route{name: fmt.Sprintf("hp-%s-%s", r.kind, send), kind: r.kind, send: send, backend: r.ln.Addr(), port: freePort(t)})
		}
	}
	cfg := "global\n    maxconn 100\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 1m\n    timeout server 1m\n"
	for i, r := range routes {
		cfg += fmt.Sprintf("frontend f%d\n    bind 127.0.0.1:%d\n    default_backend b%d\nbackend b%d\n    server s 127.0.0.1:%d %s\n",
			i, r.port, i, i, r.backend.(*net.TCPAddr).Port, r.send)
	}
	cfgFile := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var hlog strings.Builder
	cmd := exec.Command(haproxy, "-f", cfgFile, "-db")
	cmd.Stdout, cmd.Stderr = &hlog, &hlog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()

	// Each miner, from its own loopback address, through HAProxy.
	want := map[string]string{} // worker -> the address the miner connected from
	for i, r := range routes {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(11+i))}, Timeout: time.Second}
		var nc net.Conn
		for deadline := time.Now().Add(10 * time.Second); ; {
			if nc, err = d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", r.port)); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("HAProxy never listened on %d: %v\n%s", r.port, err, hlog.String())
			}
			<-time.After(20 * time.Millisecond) // polling a process start with a deadline
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(20 * time.Second))
		want[r.name] = nc.LocalAddr().String()
		switch r.kind {
		case "v1", "tls":
			var c net.Conn = nc
			if r.kind == "tls" {
				c = tls.Client(nc, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
			}
			v1Authorize(t, c, r.name)
		case "v2":
			v2Open(t, nc, inst, r.name)
		}
	}

	resp, err := http.Get(inst.httpURL() + "api/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Workers []struct {
			Name   string `json:"name"`
			Remote string `json:"remote"`
		} `json:"workers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, w := range st.Workers {
		got[w.Name] = w.Remote
	}
	for name, addr := range want {
		if got[name] != addr {
			t.Errorf("/api/status: worker %s remote %q, want the miner's %s (HAProxy's would be 127.0.0.1)", name, got[name], addr)
		}
	}

	// From 127.0.0.2, not on the list, straight to the coordinator: its
	// own PROXY header is refused, and no worker gets the claimed address.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	nc, err := d.Dial("tcp", inst.lns.V1.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(nc, "PROXY TCP4 203.0.113.9 127.0.0.1 5555 3333\r\n"+`{"id":1,"method":"mining.subscribe","params":[]}`+"\n")
	if line, err := bufio.NewReader(nc).ReadString('\n'); err == nil {
		t.Fatalf("a PROXY header from 127.0.0.2 was answered: %q", line)
	}
	for _, w := range inst.coord.Status().Workers {
		if strings.HasPrefix(w.Remote, "203.0.113.9") {
			t.Fatalf("worker %s has the claimed address %s", w.Name, w.Remote)
		}
	}
}

// v1Authorize subscribes and authorizes user over c.
func v1Authorize(t *testing.T, c net.Conn, user string) {
	t.Helper()
	fmt.Fprintf(c, `{"id":1,"method":"mining.subscribe","params":["t/1"]}`+"\n"+`{"id":2,"method":"mining.authorize","params":[%q,"x"]}`+"\n", user)
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		var m struct {
			ID     json.RawMessage `json:"id"`
			Result json.RawMessage `json:"result"`
		}
		json.Unmarshal([]byte(line), &m)
		if string(m.ID) == "2" {
			if string(m.Result) != "true" {
				t.Fatalf("%s: authorize answered %s", user, line)
			}
			return
		}
	}
}

// v2Open sets up a V2 connection over c and opens a standard channel for
// user.
func v2Open(t *testing.T, c net.Conn, inst *instance, user string) {
	t.Helper()
	authority, err := sv2.ParseAuthorityKey(inst.lns.SV2URL[strings.LastIndex(inst.lns.SV2URL, "/")+1:])
	if err != nil {
		t.Fatal(err)
	}
	conn, err := sv2.ClientHandshake(c, sv2.ClientConfig{Authority: authority})
	if err != nil {
		t.Fatalf("%s: handshake: %v", user, err)
	}
	max := sv2.U256{}
	for i := range max {
		max[i] = 0xff
	}
	if err := conn.WriteMessages(&sv2.SetupConnection{MinVersion: 2, MaxVersion: 2, Flags: 1},
		&sv2.OpenStandardMiningChannel{RequestID: 1, UserIdentity: user, MaxTarget: max}); err != nil {
		t.Fatal(err)
	}
	for {
		_, m, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		switch m := m.(type) {
		case *sv2.OpenStandardMiningChannelSuccess:
			return
		case *sv2.OpenMiningChannelError, *sv2.SetupConnectionError:
			t.Fatalf("%s: %+v", user, m)
		}
	}
}

// TestProxyProtocolFromFlag: coordinator and frontend both take
// --proxy-protocol-from, and both refuse a bad entry at parse time,
// naming it.
func TestProxyProtocolFromFlag(t *testing.T) {
	for _, cmd := range []string{"coordinator", "frontend"} {
		var stderr strings.Builder
		err := run(t.Context(), []string{cmd, "--proxy-protocol-from", "10.0.0.0/8,haproxy.lan"}, io.Discard, &stderr)
		if err == nil || !strings.Contains(stderr.String()+err.Error(), `proxy address "haproxy.lan"`) {
			t.Errorf("%s: %v %s, want the bad entry named", cmd, err, stderr.String())
		}
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	var lf listen.Flags
	lf.Register(fs, "", false)
	if err := fs.Parse([]string{"--proxy-protocol-from", "10.0.0.5, fd00::/8"}); err != nil || fs.Lookup("proxy-protocol-from").Value.String() != "10.0.0.5/32,fd00::/8" {
		t.Fatalf("parsed %v, %v", lf.ProxyFrom, err)
	}
}

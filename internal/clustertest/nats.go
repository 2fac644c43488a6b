// Package clustertest starts the real services a powcoord cluster runs on,
// for tests: a cluster of nats-server processes with JetStream (the binary
// pinned in go.mod as a tool, `go tool nats-server`) and a throwaway
// PostgreSQL server (Debian's postgresql package, initdb + pg_ctl in a
// temporary directory). Everything listens on 127.0.0.1 only and is stopped
// when the test ends.
//
// The NATS servers run as separate processes, not embedded in the test
// binary: Kill is then a real SIGKILL (no shutdown path runs, the store is
// left as a crash leaves it), the servers are not slowed down by the race
// detector the tests run under, and the binary is the same one an operator
// runs.
package clustertest

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/powcoord/powcoord/internal/gotool"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// NATSServerPath returns the path of the nats-server binary pinned in
// go.mod as a tool (`go tool -n nats-server`), building it on first use.
func NATSServerPath() (string, error) { return gotool.Path("nats-server") }

// startTimeout bounds how long a server may take to answer its health
// check after being started (JetStream meta-leader election included).
const startTimeout = 30 * time.Second

// NATSCluster is a running cluster of nats-server processes with
// JetStream, routed to each other on loopback.
type NATSCluster struct {
	// Servers are the cluster's members, in the order they were created.
	Servers []*NATSServer
	// Name is the NATS cluster name.
	Name string
}

// NATSServer is one member of a NATSCluster.
type NATSServer struct {
	// Name is the server name (n1, n2, ...), unique in the cluster.
	Name string
	// Dir holds the server's configuration, JetStream store (Dir/js) and
	// captured output (Dir/nats-server.out). It survives Kill and Start.
	Dir string

	t           testing.TB
	bin         string
	cluster     *NATSCluster
	clusterPort int

	mu         sync.Mutex
	clientPort int // 0 until the first start has read it back
	httpPort   int
	cmd        *exec.Cmd
	waited     chan struct{}
}

// StartNATSCluster starts n nats-server processes (n >= 1) with JetStream
// enabled, each with its own store directory under t.TempDir(), routed
// into one cluster, waits until every server reports itself healthy, and
// kills them all when the test ends. Client and monitoring ports are
// chosen by the servers (port -1) and read back; cluster ports are
// reserved up front because every server's routes must name them. It
// skips the test when nats-server cannot be built.
func StartNATSCluster(t testing.TB, n int) *NATSCluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("StartNATSCluster: %d servers: want at least 1", n)
	}
	bin, err := NATSServerPath()
	if err != nil {
		t.Skipf("nats-server is not available, skipping the cluster test: %v", err)
	}
	c := &NATSCluster{Name: "powcoord-test"}
	base := t.TempDir()
	for i := range n {
		port, err := freePort()
		if err != nil {
			t.Fatalf("finding a free cluster port: %v", err)
		}
		s := &NATSServer{
			Name:        "n" + strconv.Itoa(i+1),
			Dir:         filepath.Join(base, "n"+strconv.Itoa(i+1)),
			t:           t,
			bin:         bin,
			cluster:     c,
			clusterPort: port,
		}
		if err := os.MkdirAll(s.Dir, 0o700); err != nil {
			t.Fatal(err)
		}
		c.Servers = append(c.Servers, s)
	}
	for _, s := range c.Servers {
		t.Cleanup(s.Kill)
	}
	// Start every process first, then wait: JetStream elects its meta
	// leader only once a quorum of servers is up.
	for _, s := range c.Servers {
		s.spawn()
	}
	for _, s := range c.Servers {
		s.waitHealthy()
	}
	return c
}

// URLs returns every server's client URL (nats://127.0.0.1:port), in
// server order.
func (c *NATSCluster) URLs() []string {
	urls := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		urls[i] = s.URL()
	}
	return urls
}

// URL returns the server's client URL, nats://127.0.0.1:port. It stays the
// same across Kill and Start.
func (s *NATSServer) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return "nats://127.0.0.1:" + strconv.Itoa(s.clientPort)
}

// MonitorURL returns the server's HTTP monitoring address,
// http://127.0.0.1:port.
func (s *NATSServer) MonitorURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return "http://127.0.0.1:" + strconv.Itoa(s.httpPort)
}

// Running reports whether the server process is running.
func (s *NATSServer) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Kill stops the process at once (SIGKILL: no shutdown code runs) and
// waits for it to exit. It does nothing when the server is not running.
func (s *NATSServer) Kill() {
	s.mu.Lock()
	cmd, waited := s.cmd, s.waited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-waited
}

// Start starts the server again after Kill, with the same name, ports and
// store directory, and waits until it reports itself healthy (which for
// JetStream includes having caught up with the cluster).
func (s *NATSServer) Start() {
	s.t.Helper()
	s.spawn()
	s.waitHealthy()
}

func (s *NATSServer) config() string {
	s.mu.Lock()
	clientPort, httpPort := s.clientPort, s.httpPort
	s.mu.Unlock()
	if clientPort == 0 {
		clientPort, httpPort = -1, -1
	}
	var routes []string
	for _, o := range s.cluster.Servers {
		if o != s {
			routes = append(routes, strconv.Quote("nats://127.0.0.1:"+strconv.Itoa(o.clusterPort)))
		}
	}
	slash := filepath.ToSlash
	cfg := fmt.Sprintf(`server_name: %q
listen: "127.0.0.1:%d"
http: "127.0.0.1:%d"
ports_file_dir: %q
jetstream {
  store_dir: %q
  max_memory_store: 268435456
  max_file_store: 4294967296
}
`, s.Name, clientPort, httpPort, slash(filepath.Join(s.Dir, "ports")), slash(filepath.Join(s.Dir, "js")))
	// A lone server runs JetStream stand-alone: with a cluster block and
	// no routes nats-server refuses to start JetStream.
	if len(routes) > 0 {
		cfg += fmt.Sprintf(`cluster {
  name: %q
  listen: "127.0.0.1:%d"
  routes: [%s]
}
`, s.cluster.Name, s.clusterPort, strings.Join(routes, ", "))
	}
	return cfg
}

// spawn starts the process without waiting for it to become healthy.
func (s *NATSServer) spawn() {
	s.t.Helper()
	if s.Running() {
		s.t.Fatalf("nats-server %s is already running", s.Name)
	}
	portsDir := filepath.Join(s.Dir, "ports")
	os.RemoveAll(portsDir)
	if err := os.MkdirAll(portsDir, 0o700); err != nil {
		s.t.Fatal(err)
	}
	conf := filepath.Join(s.Dir, "nats-server.conf")
	if err := os.WriteFile(conf, []byte(s.config()), 0o600); err != nil {
		s.t.Fatal(err)
	}
	out, err := os.OpenFile(filepath.Join(s.Dir, "nats-server.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(s.bin, "-c", conf)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		s.t.Fatalf("starting nats-server %s: %v", s.Name, err)
	}
	waited := make(chan struct{})
	go func() {
		cmd.Wait()
		out.Close()
		close(waited)
	}()
	s.mu.Lock()
	s.cmd, s.waited = cmd, waited
	s.mu.Unlock()
}

// waitHealthy reads the ports back (first start only) and polls /healthz
// until it answers 200, with a deadline.
func (s *NATSServer) waitHealthy() {
	s.t.Helper()
	s.mu.Lock()
	waited := s.waited
	s.mu.Unlock()
	deadline := time.Now().Add(startTimeout)
	client := &http.Client{Timeout: 2 * time.Second}
	var last string
	for {
		select {
		case <-waited:
			s.t.Fatalf("nats-server %s exited at start:\n%s", s.Name, s.tail())
		default:
		}
		if err := s.readPorts(); err != nil {
			last = err.Error()
		} else {
			last = s.healthz(client)
			if last == "" {
				return
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("nats-server %s not healthy within %v: %s\n%s", s.Name, startTimeout, last, s.tail())
		}
		time.Sleep(50 * time.Millisecond) // polling a process with a deadline
	}
}

// readPorts fills in the client and monitoring ports from the ports file
// the server writes once it listens.
func (s *NATSServer) readPorts() error {
	s.mu.Lock()
	known := s.clientPort != 0
	s.mu.Unlock()
	if known {
		return nil
	}
	files, _ := filepath.Glob(filepath.Join(s.Dir, "ports", "*.ports"))
	if len(files) == 0 {
		return fmt.Errorf("no ports file yet in %s", filepath.Join(s.Dir, "ports"))
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		return err
	}
	var ports struct {
		Nats       []string `json:"nats"`
		Monitoring []string `json:"monitoring"`
	}
	if err := json.Unmarshal(data, &ports); err != nil || len(ports.Nats) == 0 || len(ports.Monitoring) == 0 {
		return fmt.Errorf("ports file %s incomplete: %q", files[0], data)
	}
	cp, err1 := urlPort(ports.Nats[0])
	hp, err2 := urlPort(ports.Monitoring[0])
	if err1 != nil || err2 != nil {
		return fmt.Errorf("ports file %s: %q", files[0], data)
	}
	s.mu.Lock()
	s.clientPort, s.httpPort = cp, hp
	s.mu.Unlock()
	return nil
}

func urlPort(u string) (int, error) {
	i := strings.LastIndexByte(u, ':')
	if i < 0 {
		return 0, fmt.Errorf("no port in %q", u)
	}
	return strconv.Atoi(u[i+1:])
}

// healthz returns "" when the server's /healthz answers 200, else what it
// answered.
func (s *NATSServer) healthz(client *http.Client) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.MonitorURL()+"/healthz", nil)
	if err != nil {
		return err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var body [512]byte
	n, _ := resp.Body.Read(body[:])
	if resp.StatusCode == http.StatusOK {
		return ""
	}
	return fmt.Sprintf("healthz %d: %s", resp.StatusCode, strings.TrimSpace(string(body[:n])))
}

// Logs returns the end of every server's output, for failure messages.
func (c *NATSCluster) Logs() string {
	var b strings.Builder
	for _, s := range c.Servers {
		fmt.Fprintf(&b, "--- nats-server %s (%s):\n%s\n", s.Name, s.Dir, s.tail())
	}
	return b.String()
}

// tail returns the end of the server's output, for failure messages.
func (s *NATSServer) tail() string {
	data, _ := os.ReadFile(filepath.Join(s.Dir, "nats-server.out"))
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return string(data)
}

// freePort returns a port free on 127.0.0.1 now, for a server that must
// be told its port before it starts. It picks at random below the
// kernel's ephemeral range (Linux: 32768 and up), where the port-0
// listeners of tests running at the same time cannot take it between this
// check and the server's bind.
func freePort() (int, error) {
	var last error
	for range 200 {
		port := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			last = err
			continue
		}
		ln.Close()
		return port, nil
	}
	return 0, fmt.Errorf("no free port in 20000-32000 after 200 tries: %w", last)
}

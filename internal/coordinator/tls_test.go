package coordinator_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/powcoord/powcoord/internal/agent"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/stratum"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key as
// PEM files and returns their paths and the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "powcoord test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	kder, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile, cert
}

func TestTLSListener(t *testing.T) {
	const diff = 1e-7
	h := newHarness(t, harnessOpts{shareDiff: diff})
	certFile, keyFile, cert := selfSigned(t)
	ln, err := coordinator.ListenTLS("127.0.0.1:0", certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.coord.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve TLS: %v", err)
		}
	})

	roots := x509.NewCertPool()
	roots.AddCert(cert)
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &client{t: t, conn: conn, r: bufio.NewReader(conn), jobs: map[string]*stratum.Notify{}}
	n := c.ready("alice")
	s := c.solve(n, 1, diff, false, 0)
	s.worker = "alice"
	if ok, code := c.submit(s); !ok {
		t.Fatalf("share over TLS rejected with %d", code)
	}
	// The plain listener serves at the same time, from the same work.
	p := h.dial()
	if pn := p.ready("bob"); pn.PrevHash != n.PrevHash {
		t.Fatalf("plain and TLS sessions on different work: %s vs %s", pn.PrevHash, n.PrevHash)
	}
	if got := h.coord.SessionCount(); got != 2 {
		t.Fatalf("sessions %d, want 2", got)
	}
	// A client speaking plain Stratum to the TLS port gets nothing useful
	// and the server carries on.
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	rc := &client{t: t, conn: raw, r: bufio.NewReader(raw)}
	rc.send(`{"id":1,"method":"mining.subscribe","params":[]}`)
	if m, err := rc.readMsg(); err == nil && m.Method != "" {
		t.Fatalf("plain text on the TLS port answered %+v", m)
	}
	raw.Close()
	if m := c.call("mining.extranonce.subscribe", []any{}); string(m.Result) != "true" {
		t.Fatalf("TLS session after a bad client: %s", m.Result)
	}
}

func TestListenTLSBadFiles(t *testing.T) {
	_, err := coordinator.ListenTLS("127.0.0.1:0", "/nonexistent/cert.pem", "/nonexistent/key.pem")
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/cert.pem") {
		t.Fatalf("error %v, want one naming the certificate file", err)
	}
}

// TestAgentOverTLS: the agent mines through a stratum+ssl:// URL and its
// shares land in the ledger.
func TestAgentOverTLS(t *testing.T) {
	h := newHarness(t, harnessOpts{shareDiff: 1e-6})
	certFile, keyFile, cert := selfSigned(t)
	ln, err := coordinator.ListenTLS("127.0.0.1:0", certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.coord.Serve(ctx, ln) }()
	defer func() {
		cancel()
		<-done
	}()
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	a, err := agent.New(agent.Config{URLs: []string{"stratum+ssl://" + ln.Addr().String()}, User: "tlsminer", Threads: 1, TLSConfig: &tls.Config{RootCAs: roots}})
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(ctx)
	adone := make(chan error, 1)
	go func() { adone <- a.Run(actx) }()
	deadline := time.Now().Add(30 * time.Second)
	for a.Stats().Accepted < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("agent over TLS: %d shares accepted in 30 s", a.Stats().Accepted)
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
	acancel()
	<-adone
	shares, err := h.store.Shares(context.Background(), "tlsminer")
	if err != nil || len(shares) < 3 {
		t.Fatalf("ledger has %d shares of the TLS agent (%v), want at least 3", len(shares), err)
	}
}

// TestTLSRefusalDoesNotBlockAccept: a refused client on the TLS port that
// never sends its handshake does not hold up the accept loop. In virtual
// time the next client is served with no time passing at all; a refusal
// handled on the accept loop would wait out its 1 s handshake deadline
// first.
func TestTLSRefusalDoesNotBlockAccept(t *testing.T) {
	certFile, keyFile, cert := selfSigned(t)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{pipe: true, cfg: func(c *coordinator.Config) { c.MaxConnsPerIP = 1 }})
		pl := newPipeListener()
		ln := tls.NewListener(pl, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- h.coord.Serve(ctx, ln) }()
		defer func() {
			cancel()
			<-done
		}()
		roots := x509.NewCertPool()
		roots.AddCert(cert)
		dialTLS := func(src string) *client {
			// The bubble's clock starts in 2000: verify at a time the certificate is valid.
			conn := tls.Client(pl.dialFrom(src), &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", Time: func() time.Time { return cert.NotBefore.Add(time.Minute) }})
			t.Cleanup(func() { conn.Close() })
			return &client{t: t, conn: conn, r: bufio.NewReader(conn), jobs: map[string]*stratum.Notify{}}
		}
		dialTLS("127.0.0.1").ready("first")
		// Over the per-IP cap and silent: no TLS handshake at all.
		for range 5 {
			silent := pl.dialFrom("127.0.0.1")
			defer silent.Close()
		}
		// Another address is still accepted and served at once.
		start := time.Now()
		dialTLS("127.0.0.2").ready("second")
		if d := time.Since(start); d != 0 {
			t.Fatalf("accept held up %v (virtual time) by silent refused clients", d)
		}
	})
}

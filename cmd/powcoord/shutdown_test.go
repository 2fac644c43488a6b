package main

import (
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
	"sync"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/agent"
	"github.com/powcoord/powcoord/internal/store"
)

// writeSelfSigned writes a self-signed certificate for 127.0.0.1 and its
// key into dir and returns their paths and a pool trusting it.
func writeSelfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "powcoord test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestShutdownWhileSubmitting is defect 5: plain and TLS sessions submit
// shares as fast as they can while the coordinator stops. Every server
// must have returned before the store closes (under -race: no share
// recorded into a closed store, no race on session fields), and every
// share a miner was told true for must be in the ledger afterwards.
func TestShutdownWhileSubmitting(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := writeSelfSigned(t, dir)
	f := testFlags(filepath.Join(dir, "data"))
	f.shareDiff = 1e-6 // many shares a second per agent
	f.blockDiff = 1e3  // and no blocks
	f.listen.TLS, f.listen.TLSCert, f.listen.TLSKey = "127.0.0.1:0", certFile, keyFile
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inst, err := startCoordinator(ctx, f, quietLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var agents []*agent.Agent
	agentCtx, stopAgents := context.WithCancel(context.Background())
	defer stopAgents()
	var wg sync.WaitGroup
	for i, url := range []string{
		"stratum+tcp://" + inst.lns.V1.Addr().String(),
		"stratum+ssl://" + inst.lns.TLS.Addr().String(),
		"stratum+tcp://" + inst.lns.V1.Addr().String(),
		"stratum+ssl://" + inst.lns.TLS.Addr().String(),
	} {
		a, err := agent.New(agent.Config{
			URLs: []string{url}, User: []string{"ann", "ben", "cat", "dan"}[i], Pass: "x", Threads: 1,
			Logger: quietLogger(), TLSConfig: &tls.Config{RootCAs: pool},
		})
		if err != nil {
			t.Fatal(err)
		}
		agents = append(agents, a)
		wg.Add(1)
		go func() { defer wg.Done(); a.Run(agentCtx) }()
	}
	// Wait until every agent has shares accepted (polling with a deadline:
	// the agents need real hashing time).
	deadline := time.Now().Add(60 * time.Second)
	for {
		ready := 0
		for _, a := range agents {
			if a.Stats().Accepted >= 5 {
				ready++
			}
		}
		if ready == len(agents) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d agents had 5 shares accepted in time", ready, len(agents))
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel() // stop the coordinator while the agents keep submitting
	if err := inst.wait(); err != nil {
		t.Fatalf("coordinator stopped with %v", err)
	}
	// Every session has ended (TLS ones included) before wait returns.
	if n := inst.coord.SessionCount(); n != 0 {
		t.Fatalf("%d sessions still open after the coordinator stopped", n)
	}
	// By now the store is closed: the servers all returned first.
	if _, err := inst.store.ShareCount(context.Background()); err != store.ErrClosed {
		t.Fatalf("store after wait: %v, want it closed", err)
	}
	stopAgents()
	wg.Wait()
	var told uint64
	for _, a := range agents {
		told += a.Stats().Accepted
	}
	st, err := store.Open(filepath.Join(dir, "data", "powcoord.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n, err := st.ShareCount(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if uint64(n) < told {
		t.Fatalf("ledger holds %d shares, but miners were told true %d times", n, told)
	}
	t.Logf("%d shares acknowledged, %d in the ledger", told, n)
}

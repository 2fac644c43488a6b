package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/powcoord/powcoord/internal/agent"
	"github.com/powcoord/powcoord/internal/hasher"
)

// urlList is the repeatable --url flag.
type urlList []string

func (u *urlList) String() string { return strings.Join(*u, ",") }
func (u *urlList) Set(s string) error {
	*u = append(*u, s)
	return nil
}

const agentUsage = `Usage: powcoord agent --url URL [--url URL]... [flags]

A CPU miner for any Stratum V1 pool, or a Stratum V2 pool given as
stratum2+tcp://host:port/AUTHORITYKEY (the pool must prove a certificate
from that key). With several --url the first is the primary; the others
are used while it is down, and the agent moves back to the primary as
soon as it answers again.

Example:
  powcoord agent --url stratum+tcp://127.0.0.1:3333 --user alice.rig1 --threads 4
  powcoord agent --url stratum2+tcp://127.0.0.1:3336/9bXiEd8boQVhq7WddEcERUL5tyyJVFYdU8th3HfbNXK3Yw6GRXh --url stratum+tcp://127.0.0.1:3333

Flags:
`

// runAgent runs the agent subcommand until ctx is cancelled.
func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var urls urlList
	fs.Var(&urls, "url", "pool `URL`: stratum+tcp://host:port, stratum+ssl://host:port, stratum2+tcp://host:port/AUTHORITYKEY or host:port; repeat for backup pools (required)")
	user := fs.String("user", "powcoord", "worker `name` for mining.authorize (e.g. address.worker)")
	pass := fs.String("pass", "x", "`password` for mining.authorize")
	threads := fs.Int("threads", runtime.NumCPU(), "hashing threads (`N` >= 1)")
	kernel := fs.String("kernel", "auto", "hashing kernel `name` (see powcoord bench), or auto: the fastest here, measured at start (about half a second); available: "+kernelNames())
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	statsEvery := fs.Duration("stats-interval", 10*time.Second, "how often to log hashrate and share counts (`duration`, e.g. 10s)")
	primaryRetry := fs.Duration("primary-retry", 30*time.Second, "while on a backup pool, how often to check the primary (`duration`)")
	tlsCA := fs.String("tls-ca", "", "PEM `file` of certificates to trust for stratum+ssl pools (e.g. a pool's self-signed certificate); default: the system's roots")
	configPath := addConfigFlag(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), agentUsage)
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args, configPath); err != nil {
		return err
	}
	if len(urls) == 0 {
		return errors.New("agent: --url is required (e.g. --url stratum+tcp://127.0.0.1:3333)")
	}
	if *threads < 1 {
		return fmt.Errorf("agent: --threads %d: must be at least 1", *threads)
	}
	if *statsEvery <= 0 {
		return fmt.Errorf("agent: --stats-interval %v: must be positive", *statsEvery)
	}
	if *primaryRetry <= 0 {
		return fmt.Errorf("agent: --primary-retry %v: must be positive", *primaryRetry)
	}
	var k hasher.Kernel
	if *kernel != "auto" {
		var err error
		if k, err = hasher.ByName(*kernel); err != nil {
			return fmt.Errorf("agent: --kernel: %w", err)
		}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("agent: --log-level %q: want debug, info, warn or error", *logLevel)
	}
	logw, status := stderr, (*statusLine)(nil)
	if isTerminal(stderr) { // one redrawn status line instead of periodic stats logs
		status = &statusLine{w: stderr}
		logw, *statsEvery = status, 1<<62
	}
	log := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: level}))
	if k == nil {
		var why string
		k, why = hasher.Fastest()
		log.Info("hashing kernel chosen", "kernel", k.Name(), "why", why)
	}
	var tlsConf *tls.Config
	if *tlsCA != "" {
		pem, err := os.ReadFile(*tlsCA)
		if err != nil {
			return fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--tls-ca %q: no PEM certificate in it", *tlsCA)
		}
		tlsConf = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	a, err := agent.New(agent.Config{
		URLs: urls, User: *user, Pass: *pass, Threads: *threads, Kernel: k,
		Logger: log, StatsInterval: *statsEvery, PrimaryRetry: *primaryRetry,
		TLSConfig: tlsConf,
	})
	if err != nil {
		return err
	}
	if status == nil {
		return a.Run(ctx)
	}
	sctx, stop := context.WithCancel(ctx)
	drawn := make(chan struct{})
	go func() { defer close(drawn); status.run(sctx, a.Stats, time.Now()) }()
	err = a.Run(ctx)
	stop()
	<-drawn
	return err
}

// kernelNames lists the kernels this CPU can run.
func kernelNames() string {
	var names []string
	for _, k := range hasher.Available() {
		names = append(names, k.Name())
	}
	return strings.Join(names, ", ")
}

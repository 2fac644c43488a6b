package main

import (
	"context"
	"flag"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/powcoord/powcoord/internal/node"
	"github.com/powcoord/powcoord/internal/work"
)

// nodeFlags are the flags that put the coordinator on a real Bitcoin node
// instead of the embedded chain.
type nodeFlags struct {
	fs      *flag.FlagSet
	urls    nodeURLList
	user    string
	pass    string
	cookie  string
	zmq     string
	network string
	payout  string
}

// nodeURLList is a repeatable flag; each use may also hold a comma-separated
// list.
type nodeURLList []string

func (u *nodeURLList) String() string { return strings.Join(*u, ",") }

func (u *nodeURLList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			return fmt.Errorf("node URL %q: empty", v)
		}
		*u = append(*u, s)
	}
	return nil
}

// addNodeFlags registers --node (repeatable), --node-user, --node-pass,
// --node-cookie, --node-zmq, --network and --payout-address on fs.
func addNodeFlags(fs *flag.FlagSet) *nodeFlags {
	f := &nodeFlags{fs: fs}
	fs.Var(&f.urls, "node", "mine on the Bitcoin Core or btcd node at this RPC `URL` (http://host:port) instead of the embedded chain; repeat for failover nodes, tried in order")
	fs.StringVar(&f.user, "node-user", "", "node RPC `user` (rpcuser)")
	fs.StringVar(&f.pass, "node-pass", "", "node RPC `password` (rpcpassword)")
	fs.StringVar(&f.cookie, "node-cookie", "", "Bitcoin Core's RPC cookie `file` (used instead of --node-user/--node-pass; default: the network's .cookie under ~/.bitcoin when neither is given and it exists)")
	fs.StringVar(&f.zmq, "node-zmq", "", "Bitcoin Core's zmqpubhashblock `endpoint` (tcp://host:port) for faster new-block notice; long-poll and polling are always on")
	fs.StringVar(&f.network, "network", "mainnet", "the node's chain: "+strings.Join(node.Networks(), ", ")+"; addresses are decoded for it")
	fs.StringVar(&f.payout, "payout-address", "", "`address` paid by blocks of workers whose username is not an address of --network (solo miners named by their own address are paid directly)")
	return f
}

// source returns the node work source the flags describe, or (nil, nil)
// when no --node was given (the coordinator then uses the embedded chain).
// It stops following the node when ctx ends.
func (f *nodeFlags) source(ctx context.Context, logger *slog.Logger, reg prometheus.Registerer) (work.Source, error) {
	if len(f.urls) == 0 {
		var set []string
		f.fs.Visit(func(fl *flag.Flag) {
			switch fl.Name {
			case "node-user", "node-pass", "node-cookie", "node-zmq", "network", "payout-address":
				set = append(set, "--"+fl.Name)
			}
		})
		if len(set) > 0 {
			return nil, fmt.Errorf("%s given without --node: they only apply when mining on a node", strings.Join(set, ", "))
		}
		return nil, nil
	}
	if _, err := node.NetworkParams(f.network); err != nil {
		return nil, fmt.Errorf("--network: %w", err)
	}
	if f.payout != "" {
		if _, err := node.AddressScript(f.payout, f.network); err != nil {
			return nil, fmt.Errorf("--payout-address: %w", err)
		}
	}
	if f.cookie != "" && (f.user != "" || f.pass != "") {
		return nil, fmt.Errorf("--node-cookie and --node-user/--node-pass: give one or the other")
	}
	cookie := f.cookie
	if cookie == "" && f.user == "" && f.pass == "" {
		cookie = defaultCookie(f.network)
	}
	if logger == nil {
		logger = slog.Default()
	}
	src, err := node.New(ctx, node.Config{
		URLs:          f.urls,
		User:          f.user,
		Pass:          f.pass,
		CookieFile:    cookie,
		Network:       f.network,
		PayoutAddress: f.payout,
		ZMQ:           f.zmq,
		Logger:        logger.With("component", "node"),
		Registerer:    reg,
	})
	if err != nil {
		return nil, err
	}
	if f.payout == "" {
		logger.Warn("no --payout-address: only workers named by an address of the network can mine", "network", f.network)
	}
	return src, nil
}

// defaultCookie returns Bitcoin Core's cookie file for network in the
// default data directory, or "" when there is none.
func defaultCookie(network string) string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	sub := map[string]string{"mainnet": "", "testnet3": "testnet3", "testnet4": "testnet4", "signet": "signet", "regtest": "regtest"}
	dir, ok := sub[strings.ToLower(network)]
	if !ok {
		return ""
	}
	p := filepath.Join(home, ".bitcoin", dir, ".cookie")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

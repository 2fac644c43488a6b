package agent

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/powcoord/powcoord/internal/hasher"
	"github.com/powcoord/powcoord/internal/sv2"
)

// Config configures an Agent. Only URLs is required.
type Config struct {
	// URLs are the pools, in order of preference: "stratum+tcp://host:port",
	// "stratum+ssl://host:port" (Stratum over TLS),
	// "stratum2+tcp://host:port/AUTHORITYKEY" (Stratum V2, the server's
	// certificate checked against the key) or "host:port". The first is
	// the primary; the others are backups used while it is unreachable.
	URLs []string
	// User and Pass are sent with mining.authorize.
	User, Pass string
	// Threads is the number of hashing goroutines; 0 means one per CPU.
	Threads int
	// Kernel scans nonces; nil means hasher.Default().
	Kernel hasher.Kernel
	// Logger receives the agent's logs; nil discards them.
	Logger *slog.Logger
	// StatsInterval is how often hashrate and share counts are logged;
	// 0 means 10 s.
	StatsInterval time.Duration
	// UserAgent is sent with mining.subscribe; "" means "powcoord/<version>".
	UserAgent string
	// PrimaryRetry is how often, while mining on a backup pool, the agent
	// checks whether the primary answers again; 0 means 30 s.
	PrimaryRetry time.Duration
	// TLSConfig is used for stratum+ssl pools; nil means the system's
	// roots and the pool's host name. Set RootCAs to trust a self-signed
	// pool certificate.
	TLSConfig *tls.Config
	// HashLimit, when positive, caps the agent's hashing at about this many
	// hashes per second (split evenly among the threads), by pausing
	// between scan chunks; 0 hashes at full speed. The demo uses it to run
	// agents of different speeds.
	HashLimit float64
}

// pool is one parsed pool address.
type pool struct {
	url       string   // as configured
	addr      string   // host:port for net.Dial
	tls       bool     // stratum+ssl: Stratum over TLS
	v2        bool     // stratum2+tcp: Stratum V2 (sv2session.go)
	authority [32]byte // with v2: the pool authority key from the URL path
}

// parseURL accepts "stratum+tcp://host:port", "tcp://host:port" or
// "host:port".
func parseURL(raw string) (pool, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return pool{}, fmt.Errorf("pool URL %q: empty", raw)
	}
	hostport := s
	secure := false
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return pool{}, fmt.Errorf("pool URL %q: %v", raw, err)
		}
		switch u.Scheme {
		case "stratum2+tcp":
			hp, key, err := sv2.ParseURL(s)
			if err != nil {
				return pool{}, err
			}
			return pool{url: raw, addr: hp, v2: true, authority: key}, nil
		case "stratum+tcp", "tcp":
		case "stratum+ssl", "stratum+tls", "ssl", "tls":
			secure = true
		default:
			return pool{}, fmt.Errorf("pool URL %q: scheme %q not supported (want stratum+tcp, stratum+ssl or stratum2+tcp)", raw, u.Scheme)
		}
		if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
			return pool{}, fmt.Errorf("pool URL %q: want only stratum+tcp://host:port", raw)
		}
		hostport = u.Host
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return pool{}, fmt.Errorf("pool URL %q: want host:port: %v", raw, err)
	}
	if host == "" {
		return pool{}, fmt.Errorf("pool URL %q: missing host", raw)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return pool{}, fmt.Errorf("pool URL %q: port %q is not a number in 1..65535", raw, port)
	}
	return pool{url: raw, addr: net.JoinHostPort(host, port), tls: secure}, nil
}

// version returns the module version of the running binary, or "dev".
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			return v
		}
	}
	return "dev"
}

// withDefaults validates c and fills in its defaults.
func (c Config) withDefaults() (Config, []pool, error) {
	if len(c.URLs) == 0 {
		return c, nil, fmt.Errorf("agent: no pool URL given (want at least one stratum+tcp://host:port)")
	}
	pools := make([]pool, 0, len(c.URLs))
	for _, u := range c.URLs {
		p, err := parseURL(u)
		if err != nil {
			return c, nil, fmt.Errorf("agent: %w", err)
		}
		pools = append(pools, p)
	}
	if c.Threads < 0 {
		return c, nil, fmt.Errorf("agent: threads %d: must be at least 1 (or 0 for one per CPU)", c.Threads)
	}
	if c.Threads == 0 {
		c.Threads = runtime.NumCPU()
	}
	if c.Kernel == nil {
		c.Kernel = hasher.Default()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HashLimit < 0 || c.HashLimit != c.HashLimit {
		return c, nil, fmt.Errorf("agent: hash limit %v: must be 0 (none) or a positive rate", c.HashLimit)
	}
	if c.StatsInterval < 0 {
		return c, nil, fmt.Errorf("agent: stats interval %v: must not be negative", c.StatsInterval)
	}
	if c.StatsInterval == 0 {
		c.StatsInterval = 10 * time.Second
	}
	if c.PrimaryRetry < 0 {
		return c, nil, fmt.Errorf("agent: primary retry %v: must not be negative", c.PrimaryRetry)
	}
	if c.PrimaryRetry == 0 {
		c.PrimaryRetry = 30 * time.Second
	}
	if c.UserAgent == "" {
		c.UserAgent = "powcoord/" + version()
	}
	return c, pools, nil
}

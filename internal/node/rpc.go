package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultCallTimeout bounds one ordinary RPC call when the caller's
// context has no earlier deadline.
const DefaultCallTimeout = 10 * time.Second

// maxResponseBytes caps a response body (a full mainnet template with its
// transactions is a few megabytes).
const maxResponseBytes = 64 << 20

// Client is a JSON-RPC 1.0 client for Bitcoin Core and btcd over HTTP.
// It is safe for concurrent use.
type Client struct {
	endpoint   string // URL without credentials, for requests
	display    string // URL without credentials, for messages
	user, pass string
	cookieFile string
	timeout    time.Duration
	http       *http.Client
	nextID     atomic.Uint64
	observe    func(method string, d time.Duration, err error)
}

// ClientConfig configures a Client.
type ClientConfig struct {
	// URL is the node's RPC address: "http://host:port" or "host:port";
	// credentials may be given in it as "http://user:pass@host:port".
	URL string
	// User and Pass are the RPC credentials (rpcuser/rpcpassword).
	User, Pass string
	// CookieFile is Bitcoin Core's .cookie file; it is read again at every
	// call (the node rewrites it when it restarts) and takes precedence
	// over User and Pass.
	CookieFile string
	// Timeout bounds a call whose context has no deadline
	// (DefaultCallTimeout when zero).
	Timeout time.Duration
}

// RPCError is an error answered by the node for a call.
type RPCError struct {
	Endpoint string
	Method   string
	Code     int
	Message  string
}

func (e *RPCError) Error() string {
	return fmt.Sprintf("node %s: %s: %s (code %d)", e.Endpoint, e.Method, e.Message, e.Code)
}

// TransportError is a call that got no usable answer from the node: it
// could not be reached, did not answer in time, refused the credentials or
// answered something that is not JSON-RPC.
type TransportError struct {
	Endpoint string
	Method   string
	Err      error
}

func (e *TransportError) Error() string {
	return fmt.Sprintf("node %s: %s: %v", e.Endpoint, e.Method, e.Err)
}

// Unwrap returns the underlying error.
func (e *TransportError) Unwrap() error { return e.Err }

// NewClient returns a client for one node. It checks the URL but does not
// contact the node.
func NewClient(cfg ClientConfig) (*Client, error) {
	raw := strings.TrimSpace(cfg.URL)
	if raw == "" {
		return nil, errors.New("node URL is empty")
	}
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("node URL %q: %v", cfg.URL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("node URL %q: scheme %q not supported (want http or https)", cfg.URL, u.Scheme)
	}
	if u.Host == "" || u.Port() == "" {
		return nil, fmt.Errorf("node URL %q: want host:port", cfg.URL)
	}
	c := &Client{
		user:       cfg.User,
		pass:       cfg.Pass,
		cookieFile: cfg.CookieFile,
		timeout:    cfg.Timeout,
	}
	if u.User != nil {
		c.user = u.User.Username()
		c.pass, _ = u.User.Password()
		u.User = nil
	}
	if c.timeout <= 0 {
		c.timeout = DefaultCallTimeout
	}
	c.endpoint = u.String()
	c.display = u.Host
	// Each client has its own transport so that a long-poll held open on
	// one node never waits for a connection slot used by ordinary calls.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.MaxIdleConnsPerHost = 4
	c.http = &http.Client{Transport: tr}
	return c, nil
}

// Endpoint returns the node's host:port (without credentials).
func (c *Client) Endpoint() string { return c.display }

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

func (c *Client) credentials() (user, pass string, err error) {
	if c.cookieFile == "" {
		return c.user, c.pass, nil
	}
	b, err := os.ReadFile(c.cookieFile)
	if err != nil {
		return "", "", fmt.Errorf("cookie file: %w", err)
	}
	s := strings.TrimSpace(string(b))
	user, pass, ok := strings.Cut(s, ":")
	if !ok {
		return "", "", fmt.Errorf("cookie file %s: want user:password, have %d bytes without ':'", c.cookieFile, len(s))
	}
	return user, pass, nil
}

type rpcRequest struct {
	JSONRPC string `json:"jsonrpc"`
	ID      uint64 `json:"id"`
	Method  string `json:"method"`
	Params  []any  `json:"params"`
}

type rpcResponse struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Call invokes method with params and decodes the result into result
// (which may be nil to ignore it). A call whose context has no deadline is
// bounded by the client's timeout. Errors are *RPCError when the node
// answered with an error and *TransportError otherwise; both name the node
// and the method.
func (c *Client) Call(ctx context.Context, method string, params []any, result any) error {
	raw, err := c.CallRaw(ctx, method, params)
	if err != nil {
		return err
	}
	if result == nil {
		return nil
	}
	if err := json.Unmarshal(raw, result); err != nil {
		return &TransportError{Endpoint: c.display, Method: method, Err: fmt.Errorf("result %.200s: %w", raw, err)}
	}
	return nil
}

// CallRaw is Call returning the undecoded result ("null" for a null one).
func (c *Client) CallRaw(ctx context.Context, method string, params []any) (res json.RawMessage, err error) {
	if c.observe != nil {
		start := time.Now()
		defer func() { c.observe(method, time.Since(start), err) }()
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	terr := func(err error) error { return &TransportError{Endpoint: c.display, Method: method, Err: err} }
	if params == nil {
		params = []any{}
	}
	body, err := json.Marshal(rpcRequest{JSONRPC: "1.0", ID: c.nextID.Add(1), Method: method, Params: params})
	if err != nil {
		return nil, terr(fmt.Errorf("encoding params: %w", err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, terr(err)
	}
	req.Header.Set("Content-Type", "application/json")
	user, pass, err := c.credentials()
	if err != nil {
		return nil, terr(err)
	}
	if user != "" || pass != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// Strip the *url.Error wrapper, which repeats the URL.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, terr(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, terr(fmt.Errorf("reading the answer: %w", err))
	}
	if len(data) > maxResponseBytes {
		return nil, terr(fmt.Errorf("answer over %d bytes", maxResponseBytes))
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, terr(fmt.Errorf("HTTP %s: wrong RPC user/password or cookie", resp.Status))
	}
	var r rpcResponse
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, terr(fmt.Errorf("HTTP %s, not a JSON-RPC answer: %.200q", resp.Status, data))
	}
	if r.Error != nil {
		return nil, &RPCError{Endpoint: c.display, Method: method, Code: r.Error.Code, Message: r.Error.Message}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, terr(fmt.Errorf("HTTP %s: %.200q", resp.Status, data))
	}
	if len(r.Result) == 0 {
		return json.RawMessage("null"), nil
	}
	return r.Result, nil
}

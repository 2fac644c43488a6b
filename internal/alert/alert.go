// Package alert posts webhooks about what a pool operator wants to hear
// of at once: a block found, optionally a new all-time best share, and a
// worker gone offline, back online, or down in hashrate (WatchWorkers).
//
// Notify never blocks: each endpoint has its own bounded queue and its
// own goroutine that posts, retries with backoff and gives up; an event
// that finds a queue full is dropped and counted. So a slow or dead
// endpoint delays neither the caller (the share path) nor the other
// endpoints. The formats are described in docs/alerts.md.
package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Formats of a webhook body.
const (
	// FormatJSON posts the event as a JSON object (Event's fields).
	FormatJSON = "json"
	// FormatDiscord posts {"content": text, "allowed_mentions": {"parse":
	// []}}, what a Discord webhook takes, with mentions switched off.
	FormatDiscord = "discord"
	// FormatNtfy posts the text as a plain-text body with a Title header,
	// what an ntfy topic (and most push services) takes.
	FormatNtfy = "ntfy"
)

// Kinds of event.
const (
	KindBlock     = "block"
	KindBestShare = "best_share"
)

// Event is what a webhook reports. Fields that do not apply to its Kind
// are left out of the JSON body.
type Event struct {
	Kind string `json:"event"` // KindBlock, KindBestShare, or a worker event (workers.go)
	// A block.
	Height   int64  `json:"height,omitempty"`
	Hash     string `json:"hash,omitempty"` // display hex: the block's, or the best share's header hash (none for a worker event)
	Finder   string `json:"finder,omitempty"`
	Accepted *bool  `json:"accepted,omitempty"`
	Reason   string `json:"reason,omitempty"` // why the chain refused it
	// A best share.
	Worker     string  `json:"worker,omitempty"`
	Difficulty float64 `json:"difficulty,omitempty"`
	Previous   float64 `json:"previous,omitempty"` // the record it beat (0: the worker's first)
	// A worker event: its newest share, how long it was silent (offline:
	// so far; back online: from its last share before the silence to the
	// newest), and for a hashrate drop its 5 m hashrate and 1 h average
	// (hashes/s).
	LastShare     time.Time `json:"last_share,omitzero"`
	SilentSeconds float64   `json:"silent_seconds,omitempty"`
	Hashrate      float64   `json:"hashrate,omitempty"`
	Average       float64   `json:"average_1h,omitempty"`
	Time          time.Time `json:"time"`
}

// Text is the one-line message of ev used by the Discord and ntfy formats.
func (ev *Event) Text() string {
	switch ev.Kind {
	case KindBlock:
		state := "accepted"
		if ev.Accepted != nil && !*ev.Accepted {
			state = "not accepted: " + ev.Reason
		}
		return fmt.Sprintf("Block %d found by %s (%s): %s", ev.Height, ev.Finder, state, ev.Hash)
	case KindBestShare:
		prev := "first share"
		if ev.Previous > 0 {
			prev = "previous " + strconv.FormatFloat(ev.Previous, 'g', 6, 64)
		}
		return fmt.Sprintf("New best share for %s: difficulty %s (%s)", ev.Worker, strconv.FormatFloat(ev.Difficulty, 'g', 6, 64), prev)
	case KindWorkerOffline:
		return fmt.Sprintf("Worker %s is offline: no share for %s (last at %s)", ev.Worker, seconds(ev.SilentSeconds), ev.LastShare.Format(time.RFC3339))
	case KindWorkerOnline:
		return fmt.Sprintf("Worker %s is back online after %s without a share", ev.Worker, seconds(ev.SilentSeconds))
	case KindHashrateDrop:
		return fmt.Sprintf("Worker %s hashrate dropped to %s over 5 m, %.0f%% of its 1 h average %s",
			ev.Worker, rate(ev.Hashrate), 100*ev.Hashrate/ev.Average, rate(ev.Average))
	}
	return ev.Kind
}

func seconds(s float64) string { return (time.Duration(s) * time.Second).String() }

// rate formats hashes/s with an SI prefix.
func rate(h float64) string {
	units := []string{"H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s", "EH/s"}
	i := 0
	for h >= 1000 && i < len(units)-1 {
		h /= 1000
		i++
	}
	return strconv.FormatFloat(h, 'f', 2, 64) + " " + units[i]
}

// Title is the ntfy Title header of ev.
func (ev *Event) Title() string {
	switch ev.Kind {
	case KindBlock:
		return "powcoord: block found"
	case KindWorkerOffline:
		return "powcoord: worker offline"
	case KindWorkerOnline:
		return "powcoord: worker back online"
	case KindHashrateDrop:
		return "powcoord: worker hashrate drop"
	}
	return "powcoord: new best share"
}

// Body returns the request body and its Content-Type for format.
func Body(format string, ev *Event) ([]byte, string, error) {
	switch format {
	case FormatJSON, "":
		b, err := json.Marshal(ev)
		return b, "application/json", err
	case FormatDiscord:
		// Worker names come from miners: allowed_mentions with no types
		// keeps a worker named "@everyone" from pinging a channel.
		b, err := json.Marshal(struct {
			Content         string `json:"content"`
			AllowedMentions struct {
				Parse []string `json:"parse"`
			} `json:"allowed_mentions"`
		}{Content: ev.Text(), AllowedMentions: struct {
			Parse []string `json:"parse"`
		}{Parse: []string{}}})
		return b, "application/json", err
	case FormatNtfy:
		return []byte(ev.Text()), "text/plain; charset=utf-8", nil
	}
	return nil, "", fmt.Errorf("webhook format %q: want json, discord or ntfy", format)
}

// Config configures a Notifier. Zero values take the defaults.
type Config struct {
	// URLs are the endpoints; each gets every event. http or https only.
	URLs []string
	// Format is FormatJSON (the default), FormatDiscord or FormatNtfy.
	Format string
	// Client posts the requests (a client with Timeout per attempt).
	Client *http.Client
	// Timeout bounds one attempt (10 s).
	Timeout time.Duration
	// Attempts is how many times an event is posted before it is given up
	// (5); RetryMin and RetryMax bound the backoff between two attempts
	// (1 s doubling to 1 min).
	Attempts           int
	RetryMin, RetryMax time.Duration
	// QueueSize is how many events may wait per endpoint (64); more are
	// dropped and counted.
	QueueSize int
	// Logger receives failures (slog.Default()).
	Logger *slog.Logger
	// Registerer receives the metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer
}

// Notifier posts events to webhooks. Create it with New, start it with
// Run, feed it with Notify.
type Notifier struct {
	cfg       Config
	log       *slog.Logger
	endpoints []*endpoint

	posted   *prometheus.CounterVec // result: ok, failed (given up)
	failures *prometheus.CounterVec // failed attempts
	dropped  *prometheus.CounterVec // queue full
}

type endpoint struct {
	url   string
	label string // host, for logs and metrics (the path may hold a token)
	queue chan Event
}

// New checks cfg and returns a Notifier.
func New(cfg Config) (*Notifier, error) {
	if _, _, err := Body(cfg.Format, &Event{Kind: KindBlock}); err != nil {
		return nil, err
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Attempts == 0 {
		cfg.Attempts = 5
	}
	if cfg.RetryMin == 0 {
		cfg.RetryMin = time.Second
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = time.Minute
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = 64
	}
	if cfg.Attempts < 1 || cfg.RetryMin < 0 || cfg.RetryMax < cfg.RetryMin || cfg.QueueSize < 1 || cfg.Timeout < 0 {
		return nil, fmt.Errorf("webhook settings: attempts %d, retry %v..%v, queue %d, timeout %v: want attempts >= 1, 0 <= min <= max, queue >= 1",
			cfg.Attempts, cfg.RetryMin, cfg.RetryMax, cfg.QueueSize, cfg.Timeout)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n := &Notifier{
		cfg: cfg, log: cfg.Logger,
		posted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "powcoord_webhook_posts_total",
			Help: "Webhook events by endpoint host and result: ok (delivered), failed (given up after every attempt).",
		}, []string{"webhook", "result"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "powcoord_webhook_failed_attempts_total",
			Help: "Webhook attempts that failed (no answer in time, connection error, or a non-2xx status), by endpoint host.",
		}, []string{"webhook"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "powcoord_webhook_dropped_total",
			Help: "Webhook events dropped because the endpoint's queue was full, by endpoint host.",
		}, []string{"webhook"}),
	}
	for _, raw := range cfg.URLs {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("webhook URL %q: want http://host/path or https://host/path", redact(raw))
		}
		n.endpoints = append(n.endpoints, &endpoint{url: raw, label: u.Host, queue: make(chan Event, cfg.QueueSize)})
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{n.posted, n.failures, n.dropped} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("webhook metrics: %w", err)
			}
		}
	}
	for _, e := range n.endpoints {
		// Series exist from the start, at zero.
		n.posted.WithLabelValues(e.label, "ok")
		n.posted.WithLabelValues(e.label, "failed")
		n.failures.WithLabelValues(e.label)
		n.dropped.WithLabelValues(e.label)
	}
	return n, nil
}

// redact keeps a URL's scheme and host only: webhook paths carry tokens.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(unparsable URL)"
	}
	return u.Scheme + "://" + u.Host + "/..."
}

// Notify queues ev for every endpoint and returns at once; an endpoint
// whose queue is full drops it (counted in powcoord_webhook_dropped_total).
func (n *Notifier) Notify(ev Event) {
	for _, e := range n.endpoints {
		select {
		case e.queue <- ev:
		default:
			n.dropped.WithLabelValues(e.label).Inc()
		}
	}
}

// Run posts queued events until ctx ends; an attempt in flight is
// abandoned then. It returns once every endpoint's goroutine has.
func (n *Notifier) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, e := range n.endpoints {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case ev := <-e.queue:
					n.deliver(ctx, e, &ev)
				}
			}
		})
	}
	wg.Wait()
}

// deliver posts ev to e, retrying with backoff until it succeeds, the
// attempts run out or ctx ends.
func (n *Notifier) deliver(ctx context.Context, e *endpoint, ev *Event) {
	body, ctype, err := Body(n.cfg.Format, ev)
	if err != nil {
		n.log.Error("encoding webhook event", "webhook", e.label, "err", err)
		return
	}
	delay := n.cfg.RetryMin
	for attempt := 1; ; attempt++ {
		err := n.post(ctx, e, ev, body, ctype)
		if err == nil {
			n.posted.WithLabelValues(e.label, "ok").Inc()
			return
		}
		if ctx.Err() != nil {
			return
		}
		n.failures.WithLabelValues(e.label).Inc()
		var perm permanent
		if attempt >= n.cfg.Attempts || errors.As(err, &perm) {
			n.posted.WithLabelValues(e.label, "failed").Inc()
			n.log.Warn("webhook given up", "webhook", e.label, "event", ev.Kind, "attempts", attempt, "err", err)
			return
		}
		n.log.Debug("webhook attempt failed; retrying", "webhook", e.label, "event", ev.Kind, "attempt", attempt, "retry_in", delay, "err", err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(2*delay, n.cfg.RetryMax)
	}
}

// permanent is an answer that retrying will not change (a 4xx other
// than 408 and 429).
type permanent struct{ error }

func (n *Notifier) post(ctx context.Context, e *endpoint, ev *Event, body []byte, ctype string) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return permanent{fmt.Errorf("webhook request to %s: %w", e.label, err)}
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("User-Agent", "powcoord")
	if n.cfg.Format == FormatNtfy {
		req.Header.Set("Title", ev.Title())
	}
	resp, err := n.cfg.Client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL may carry a token
		}
		return fmt.Errorf("posting to %s: %w", e.label, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode >= 500:
		return fmt.Errorf("%s answered %s", e.label, resp.Status)
	default:
		return permanent{fmt.Errorf("%s answered %s", e.label, resp.Status)}
	}
}

package web

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/sim"
)

// historyLen is how many samples the server keeps for charts on first
// load: one hour at the default one-second interval.
const historyLen = 3600

// Sample is one point of the dashboard's time series.
type Sample struct {
	Time       int64              `json:"t"` // Unix milliseconds
	Hashrate   float64            `json:"hashrate"`
	Difficulty float64            `json:"difficulty"`
	Height     int64              `json:"height"`
	Sessions   int                `json:"sessions"`
	Workers    map[string]float64 `json:"workers"` // hashrate per worker name
}

// History is the JSON of GET /api/history: the recent samples, oldest
// first, and what the charts draw them against.
type History struct {
	IntervalSeconds    float64  `json:"interval_seconds"`
	TargetBlockSeconds float64  `json:"target_block_seconds"`
	Samples            []Sample `json:"samples"`
}

// statusEvent is the data of a "status" server-sent event.
type statusEvent struct {
	Status     coordinator.Status `json:"status"`
	Sample     Sample             `json:"sample"`
	Simulation *sim.Summary       `json:"simulation,omitempty"`
}

// live holds the sampled history and the event subscribers.
type live struct {
	mu         sync.Mutex
	ring       []Sample // ring buffer of at most historyLen samples
	next       int      // where the next sample goes once the ring is full
	interval   time.Duration
	blockTime  time.Duration
	simulation func() sim.Summary
	subs       map[chan []byte]struct{}
	running    bool
	stopped    bool
	lastHeight int64 // newest block already announced
}

func (l *live) add(s Sample) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.ring) < historyLen {
		l.ring = append(l.ring, s)
		return
	}
	l.ring[l.next] = s
	l.next = (l.next + 1) % historyLen
}

func (l *live) history() History {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Sample, 0, len(l.ring))
	out = append(out, l.ring[l.next:]...)
	out = append(out, l.ring[:l.next]...)
	return History{IntervalSeconds: l.interval.Seconds(), TargetBlockSeconds: l.blockTime.Seconds(), Samples: out}
}

// subscribe returns a channel of encoded events, or nil when Run has
// ended.
func (l *live) subscribe() chan []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return nil
	}
	ch := make(chan []byte, 16)
	l.subs[ch] = struct{}{}
	return ch
}

func (l *live) unsubscribe(ch chan []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.subs[ch]; ok {
		delete(l.subs, ch)
		close(ch)
	}
}

// publish sends one event to every subscriber; a subscriber whose buffer
// is full is dropped (its browser reconnects and reloads the history).
func (l *live) publish(event string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		return
	}
	var b bytes.Buffer
	b.WriteString("event: ")
	b.WriteString(event)
	b.WriteString("\ndata: ")
	b.Write(data)
	b.WriteString("\n\n")
	msg := b.Bytes()
	l.mu.Lock()
	defer l.mu.Unlock()
	for ch := range l.subs {
		select {
		case ch <- msg:
		default:
			delete(l.subs, ch)
			close(ch)
		}
	}
}

func (l *live) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	for ch := range l.subs {
		delete(l.subs, ch)
		close(ch)
	}
}

// SetBlockTime sets the block interval the charts draw block times
// against (the embedded chain's --block-time, 600 s on Bitcoin).
func (s *Server) SetBlockTime(d time.Duration) {
	s.live.mu.Lock()
	defer s.live.mu.Unlock()
	s.live.blockTime = d
}

// SetSampleInterval sets how often Run samples the coordinator (1 s).
// Call it before Run.
func (s *Server) SetSampleInterval(d time.Duration) {
	s.live.mu.Lock()
	defer s.live.mu.Unlock()
	if d > 0 {
		s.live.interval = d
	}
}

// SetSimulation registers the demo's simulation: f's summary is served
// at GET /api/simulation (null while none is registered) and sent with
// every status event.
func (s *Server) SetSimulation(f func() sim.Summary) {
	s.live.mu.Lock()
	defer s.live.mu.Unlock()
	s.live.simulation = f
}

// simulation is the registered simulation's summary now, or nil.
func (s *Server) simulation() *sim.Summary {
	s.live.mu.Lock()
	f := s.live.simulation
	s.live.mu.Unlock()
	if f == nil {
		return nil
	}
	sum := f()
	return &sum
}

// Run samples the coordinator every sample interval into the history the
// charts load first, and pushes a "status" event per sample and a "block"
// event per new stored block to GET /api/events, until ctx ends; then it
// ends every event stream. Without Run the dashboard shows no live data.
func (s *Server) Run(ctx context.Context) {
	s.live.mu.Lock()
	if s.live.running || s.live.stopped {
		s.live.mu.Unlock()
		return
	}
	s.live.running = true
	interval := s.live.interval
	s.live.mu.Unlock()
	defer s.live.closeAll()

	if last, err := s.store.LastBlocks(ctx, 1); err == nil && len(last) == 1 {
		s.live.lastHeight = last[0].Height
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	s.sample(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.sample(ctx)
		}
	}
}

// sample takes one status snapshot, records it and publishes it with any
// blocks stored since the last sample.
func (s *Server) sample(ctx context.Context) {
	st := s.coord.Status()
	smp := Sample{
		Time: st.Time.UnixMilli(), Hashrate: st.Hashrate, Difficulty: st.Difficulty,
		Height: st.Height, Sessions: st.Sessions, Workers: make(map[string]float64, len(st.Workers)),
	}
	for _, w := range st.Workers {
		smp.Workers[w.Name] = w.Hashrate
	}
	s.live.add(smp)
	s.publishBlocks(ctx)
	s.live.publish("status", statusEvent{Status: st, Sample: smp, Simulation: s.simulation()})
}

// publishBlocks sends a "block" event for every block stored above the
// last one announced. The previous block is read too, for the interval.
func (s *Server) publishBlocks(ctx context.Context) {
	from := s.live.lastHeight
	blocks, err := s.store.Blocks(ctx, from, 101)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("reading new blocks for the dashboard", "from", from, "err", err)
		}
		return
	}
	for i, b := range BlockJSON(blocks) {
		if b.Height <= from {
			continue
		}
		if i == 0 {
			b.Interval = nil // no previous block read, so no interval
		}
		s.live.publish("block", b)
		s.live.lastHeight = b.Height
	}
}

// handleEvents streams server-sent events: "status" every sample and
// "block" for every new block, until the client leaves or Run ends.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming not supported", http.StatusInternalServerError)
		return
	}
	ch := s.live.subscribe()
	if ch == nil {
		http.Error(w, "the server is shutting down", http.StatusServiceUnavailable)
		return
	}
	defer s.live.unsubscribe(ch)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	w.Write([]byte("retry: 2000\n\n"))
	flusher.Flush()
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case msg, ok := <-ch:
			if !ok {
				return
			}
			if _, err := w.Write(msg); err != nil {
				return
			}
			flusher.Flush()
		case <-keepalive.C:
			if _, err := w.Write([]byte(": keepalive\n\n")); err != nil {
				return
			}
			flusher.Flush()
		}
	}
}

func (s *Server) handleHistory(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, s.live.history())
}

func (s *Server) handleSimulation(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, s.simulation())
}

package coordinator

import (
	"time"

	vd "github.com/powcoord/powcoord/internal/vardiff"
)

// vardiff steers one session's share difficulty towards a share rate. It
// holds no lock of its own: its session's mu guards it.
type vardiff struct {
	perMinute float64       // target shares a minute; negative: off
	interval  time.Duration // the longest time between two retargets
	min, max  float64       // bounds of the difficulty

	shares int       // shares counted since start
	start  time.Time // start of the current measuring window
}

func newVardiff(cfg *Config) vardiff {
	return vardiff{perMinute: cfg.SharesPerMinute, interval: cfg.VardiffInterval, min: cfg.MinDifficulty, max: cfg.MaxDifficulty}
}

// retarget is vardiff.Controller.Retarget on this session's window.
func (v *vardiff) retarget(now time.Time, cur float64, onShare bool) (float64, bool) {
	c := vd.Controller{PerMinute: v.perMinute, Interval: v.interval, Min: v.min, Max: v.max, Shares: v.shares, Start: v.start}
	d, changed := c.Retarget(now, cur, onShare)
	v.shares, v.start = c.Shares, c.Start
	return d, changed
}

package coordinator

import "time"

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

// retarget counts a share when onShare is set, and returns the difficulty
// that should follow cur at time now, and whether it differs from cur.
//
// It moves the difficulty once interval has passed (sooner, after an
// eighth of it, when shares come more than four times too fast) by the
// ratio of the shares seen to the shares wanted, bounded to 4× either way;
// a ratio within 0.8..1.25 leaves it as it is.
func (v *vardiff) retarget(now time.Time, cur float64, onShare bool) (float64, bool) {
	if v.perMinute < 0 {
		return cur, false
	}
	if v.start.IsZero() {
		v.start = now
	}
	if onShare {
		v.shares++
	}
	elapsed := now.Sub(v.start)
	fast := elapsed >= v.interval/8 && float64(v.shares) > 4*v.perMinute*v.interval.Minutes()
	if elapsed < v.interval && !fast {
		return cur, false
	}
	factor := float64(v.shares) / (v.perMinute * elapsed.Minutes())
	factor = min(max(factor, 0.25), 4)
	v.shares, v.start = 0, now
	if factor > 0.8 && factor < 1.25 {
		return cur, false
	}
	nd := min(max(cur*factor, v.min), v.max)
	return nd, nd != cur
}

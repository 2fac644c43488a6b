// Package vardiff steers one miner's share difficulty towards a share
// rate: the rule the coordinator's V1 sessions and V2 channels and the
// proxy's V1 miners all follow.
package vardiff

import "time"

// Controller is the state of one miner's retargeting. It holds no lock:
// its owner's lock guards it. The zero Start begins a window at the first
// call.
type Controller struct {
	PerMinute float64       // target shares a minute; negative: off
	Interval  time.Duration // the longest time between two retargets
	Min, Max  float64       // bounds of the difficulty

	Shares int       // shares counted in the current window
	Start  time.Time // start of the current measuring window
}

// Retarget counts a share when onShare is set, and returns the difficulty
// that should follow cur at time now, and whether it differs from cur.
//
// It moves the difficulty once Interval has passed (sooner, after an
// eighth of it, when shares come more than four times too fast) by the
// ratio of the shares seen to the shares wanted, bounded to 4× either way;
// a ratio within 0.8..1.25 leaves it as it is.
func (v *Controller) Retarget(now time.Time, cur float64, onShare bool) (float64, bool) {
	if v.PerMinute < 0 {
		return cur, false
	}
	if v.Start.IsZero() {
		v.Start = now
	}
	if onShare {
		v.Shares++
	}
	elapsed := now.Sub(v.Start)
	fast := elapsed >= v.Interval/8 && float64(v.Shares) > 4*v.PerMinute*v.Interval.Minutes()
	if elapsed < v.Interval && !fast {
		return cur, false
	}
	factor := float64(v.Shares) / (v.PerMinute * elapsed.Minutes())
	factor = min(max(factor, 0.25), 4)
	v.Shares, v.Start = 0, now
	if factor > 0.8 && factor < 1.25 {
		return cur, false
	}
	nd := min(max(cur*factor, v.Min), v.Max)
	return nd, nd != cur
}

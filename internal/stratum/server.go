package stratum

import (
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"strconv"
)

// The server side of two requests whose parameters every Stratum V1
// server of ours (the coordinator, the proxy) reads the same way.

// Configure answers mining.configure (BIP 310) for a server that lets
// miners roll the header version bits under serverMask: result is the
// response's result object, and mask the bits granted (serverMask ANDed
// with the miner's mask; 0 when version rolling was not asked for or
// fewer bits than the miner's minimum are left). Unknown extensions are
// answered false. The error, a CodeOther, names the malformed parameter.
func Configure(params json.RawMessage, serverMask uint32) (result map[string]any, mask uint32, err *Error) {
	var p []json.RawMessage
	if err := json.Unmarshal(params, &p); err != nil || len(p) < 1 {
		return nil, 0, &Error{Code: CodeOther, Message: fmt.Sprintf("mining.configure: want [extensions, params], have %s", params)}
	}
	var exts []string
	if err := json.Unmarshal(p[0], &exts); err != nil {
		return nil, 0, &Error{Code: CodeOther, Message: fmt.Sprintf("mining.configure: extensions %s: want a list of names", p[0])}
	}
	opts := map[string]json.RawMessage{}
	if len(p) > 1 {
		json.Unmarshal(p[1], &opts)
	}
	result = map[string]any{}
	for _, ext := range exts {
		if ext != "version-rolling" {
			result[ext] = false
			continue
		}
		minerMask := uint32(0xffffffff)
		var maskHex string
		if raw, ok := opts["version-rolling.mask"]; ok && json.Unmarshal(raw, &maskHex) == nil {
			v, err := strconv.ParseUint(maskHex, 16, 32)
			if err != nil {
				return nil, 0, &Error{Code: CodeOther, Message: fmt.Sprintf("mining.configure: version-rolling.mask %q is not hex", maskHex)}
			}
			minerMask = uint32(v)
		}
		m := serverMask & minerMask
		minBits := 0
		if raw, ok := opts["version-rolling.min-bit-count"]; ok {
			json.Unmarshal(raw, &minBits)
		}
		if bits.OnesCount32(m) < minBits {
			result["version-rolling"] = false
			continue
		}
		mask = m
		result["version-rolling"] = true
		result["version-rolling.mask"] = fmt.Sprintf("%08x", m)
	}
	return result, mask, nil
}

// ParseSuggestDifficulty reads mining.suggest_difficulty's [diff], a
// number or a numeric string, which must be positive and finite.
func ParseSuggestDifficulty(params json.RawMessage) (float64, error) {
	var p []json.RawMessage
	var d float64
	if err := json.Unmarshal(params, &p); err == nil && len(p) > 0 {
		if json.Unmarshal(p[0], &d) != nil {
			var str string
			if json.Unmarshal(p[0], &str) == nil {
				d, _ = strconv.ParseFloat(str, 64)
			}
		}
	}
	if !(d > 0) || math.IsInf(d, 0) {
		return 0, fmt.Errorf("mining.suggest_difficulty: %.100s is not a positive difficulty", params)
	}
	return d, nil
}

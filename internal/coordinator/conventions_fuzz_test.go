package coordinator

import (
	"math"
	"strings"
	"testing"
)

func TestParsePassword(t *testing.T) {
	for _, tc := range []struct {
		in, rest string
		fixed    float64
		err      string
	}{
		{"x", "x", 0, ""},
		{"", "", 0, ""},
		{"x,d=1024", "x", 1024, ""},
		{"d=0.5", "", 0.5, ""},
		{"d=512,s3cret", "s3cret", 512, ""},
		{"a, d= 8 ,b", "a,b", 8, ""},
		{"d=1,d=2", "", 2, ""}, // the last one wins
		{"abcd=1", "abcd=1", 0, ""},
		{"x,d=abc", "", 0, "password field d=abc: want a positive difficulty"},
		{"d=0", "", 0, "password field d=0:"},
		{"d=-4", "", 0, "password field d=-4:"},
		{"d=Inf", "", 0, "password field d=Inf:"},
	} {
		rest, fixed, err := parsePassword(tc.in)
		if tc.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
				t.Errorf("parsePassword(%q): err %v, want one starting %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || rest != tc.rest || fixed != tc.fixed {
			t.Errorf("parsePassword(%q) = %q, %v, %v; want %q, %v", tc.in, rest, fixed, err, tc.rest, tc.fixed)
		}
	}
}

// FuzzParsePassword: never a panic; a d= value is positive and finite;
// the password proper keeps every other field, in order, and no d= field.
func FuzzParsePassword(f *testing.F) {
	for _, s := range []string{"x", "x,d=1024", "d=0.5,foo", "d=", "d=1e400", ",,d=3,,", "d=0x10", "d=NaN"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pw string) {
		rest, fixed, err := parsePassword(pw)
		if err != nil {
			if !strings.Contains(err.Error(), "d=") {
				t.Fatalf("error %q does not name the field", err)
			}
			return
		}
		if fixed != 0 && (!(fixed > 0) || math.IsInf(fixed, 0)) {
			t.Fatalf("fixed difficulty %v from %q", fixed, pw)
		}
		if !strings.Contains(pw, "d=") {
			if rest != pw || fixed != 0 {
				t.Fatalf("%q without d= came back as %q, %v", pw, rest, fixed)
			}
			return
		}
		var kept []string
		for _, f := range strings.Split(pw, ",") {
			if !strings.HasPrefix(strings.TrimSpace(f), "d=") {
				kept = append(kept, f)
			}
		}
		if want := strings.Join(kept, ","); rest != want {
			t.Fatalf("%q: rest %q, want %q", pw, rest, want)
		}
	})
}

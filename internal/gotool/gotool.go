// Package gotool finds the binaries tests run: the tools pinned in go.mod
// (`go tool -n NAME`: btcd, nats-server), built on first use, and the
// powcoord binary itself.
package gotool

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

var (
	mu    sync.Mutex
	paths = map[string]*result{}
)

type result struct {
	once sync.Once
	path string
	err  error
}

// Path returns the path of the tool name pinned in go.mod as a tool
// (`go tool -n name`), building it on first use; later calls in the
// process return the same answer.
func Path(name string) (string, error) {
	mu.Lock()
	r := paths[name]
	if r == nil {
		r = &result{}
		paths[name] = r
	}
	mu.Unlock()
	r.once.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			r.err = fmt.Errorf("building %s needs the go command on PATH: %v", name, err)
			return
		}
		cmd := exec.Command(goBin, "tool", "-n", name)
		cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
		// The path is the last line on stdout; on a machine whose module
		// cache is empty the go command reports its downloads ("go:
		// downloading ...") on stderr, which must not end up in the path.
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			r.err = fmt.Errorf("go tool -n %s: %v: %s", name, err, strings.TrimSpace(stderr.String()))
			return
		}
		lines := strings.Fields(strings.TrimSpace(string(out)))
		if len(lines) == 0 {
			r.err = fmt.Errorf("go tool -n %s printed no path (stderr: %s)", name, strings.TrimSpace(stderr.String()))
			return
		}
		r.path = lines[len(lines)-1]
		if _, err := os.Stat(r.path); err != nil {
			r.err = fmt.Errorf("go tool -n %s: the binary it names is not there: %v", name, err)
			r.path = ""
		}
	})
	return r.path, r.err
}

// BuildPowcoord builds the powcoord command into dir and returns the
// binary's path.
func BuildPowcoord(dir string) (string, error) {
	bin := filepath.Join(dir, "powcoord")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/powcoord/powcoord/cmd/powcoord")
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

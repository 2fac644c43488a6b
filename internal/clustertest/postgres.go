package clustertest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// RequirePostgresEnv names the environment variable that turns a missing
// PostgreSQL installation from a skip into a test failure. CI sets it so
// that the PostgreSQL tests cannot silently not run.
const RequirePostgresEnv = "POWCOORD_REQUIRE_POSTGRES"

// Postgres is a running throwaway PostgreSQL server on 127.0.0.1 with
// trust authentication, owned by one test.
type Postgres struct {
	// Host and Port are where the server listens (TCP, 127.0.0.1).
	Host string
	Port int
	// Dir holds the data directory (Dir/data), the unix socket directory
	// (Dir/sock) and the server log (Dir/postgres.log).
	Dir string

	t      testing.TB
	bin    string
	runAs  *user.User // non-nil when the tools must run as this user (we are root)
	mu     sync.Mutex
	nextDB int
}

var (
	pgOnce     sync.Once
	pgBin      string
	pgRunAs    *user.User
	pgTemplate string // an initdb'ed data directory, copied for each server
	pgErr      error
	pgMissing  bool // pgErr means "not installed" rather than "broken"
)

// PostgresBinDir returns the directory holding initdb and pg_ctl: the
// newest /usr/lib/postgresql/*/bin (Debian's layout), else the directory of
// initdb found on PATH.
func PostgresBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) > pgVersion(dirs[j]) })
	for _, d := range dirs {
		if isFile(filepath.Join(d, exe("initdb"))) && isFile(filepath.Join(d, exe("pg_ctl"))) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		d := filepath.Dir(p)
		if isFile(filepath.Join(d, exe("pg_ctl"))) {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL is not installed: no initdb and pg_ctl in /usr/lib/postgresql/*/bin or on PATH (Debian: apt-get install postgresql)")
}

func pgVersion(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func exe(name string) string {
	if runtime.GOOS == "windows" {
		return name + ".exe"
	}
	return name
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// preparePostgres finds the binaries and, unless an earlier test process
// left one, runs initdb into a template directory that every server
// copies (a copy and a start take a fraction of initdb's seconds).
func preparePostgres() {
	bin, err := PostgresBinDir()
	if err != nil {
		pgErr, pgMissing = err, true
		return
	}
	pgBin = bin
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root; Debian's package creates the
		// postgres user for it.
		u, err := user.Lookup("postgres")
		if err != nil {
			pgErr = fmt.Errorf("running as root and there is no postgres user to run PostgreSQL as: %v", err)
			return
		}
		pgRunAs = u
	}
	// One template per PostgreSQL installation and user, kept in the OS
	// temporary directory and reused by later test processes.
	sum := sha256.Sum256([]byte(pgBin))
	final := filepath.Join(os.TempDir(), fmt.Sprintf("powcoord-pgtemplate-%x-%d", sum[:6], os.Geteuid()))
	if isFile(filepath.Join(final, "data", "PG_VERSION")) {
		pgTemplate = filepath.Join(final, "data")
		return
	}
	dir, err := ownedTempDir("powcoord-pgtemplate-new-")
	if err != nil {
		pgErr = err
		return
	}
	data := filepath.Join(dir, "data")
	out, err := pgCommand(pgBin, pgRunAs, "initdb", "-D", data, "-U", "postgres",
		"--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		pgErr = fmt.Errorf("initdb -D %s: %v: %s", data, err, strings.TrimSpace(string(out)))
		return
	}
	// Publish it atomically; when another process was faster, use its.
	if err := os.Rename(dir, final); err != nil {
		os.RemoveAll(dir)
		if !isFile(filepath.Join(final, "data", "PG_VERSION")) {
			pgErr = fmt.Errorf("keeping the initdb template at %s: %v", final, err)
			return
		}
	}
	pgTemplate = filepath.Join(final, "data")
}

// ownedTempDir makes a temporary directory that the PostgreSQL user can
// write. It is created directly in the OS temporary directory rather than
// under t.TempDir(), whose parents are private to the user running the
// tests.
func ownedTempDir(pattern string) (string, error) {
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		return "", err
	}
	if err := chownToRunAs(dir); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

func chownToRunAs(path string) error {
	if pgRunAs == nil {
		return nil
	}
	uid, err1 := strconv.Atoi(pgRunAs.Uid)
	gid, err2 := strconv.Atoi(pgRunAs.Gid)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("postgres user has non-numeric uid %q / gid %q", pgRunAs.Uid, pgRunAs.Gid)
	}
	if err := os.Lchown(path, uid, gid); err != nil {
		return fmt.Errorf("chown %s to the postgres user: %v", path, err)
	}
	return nil
}

// pgCommand runs a PostgreSQL tool, as runAs when it is set.
func pgCommand(binDir string, runAs *user.User, tool string, args ...string) *exec.Cmd {
	path := filepath.Join(binDir, exe(tool))
	if runAs != nil {
		return exec.Command("runuser", append([]string{"-u", runAs.Username, "--", path}, args...)...)
	}
	return exec.Command(path, args...)
}

// StartPostgres starts a PostgreSQL server on 127.0.0.1 with a free port
// and its unix socket in a temporary directory, and stops it (and removes
// its files) when the test ends. When PostgreSQL is not installed the test
// is skipped, or fails if the environment variable POWCOORD_REQUIRE_POSTGRES
// is set.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	pgOnce.Do(preparePostgres)
	if pgErr != nil {
		if pgMissing && os.Getenv(RequirePostgresEnv) == "" {
			t.Skipf("skipping the PostgreSQL test: %v (set %s=1 to make this a failure)", pgErr, RequirePostgresEnv)
		}
		t.Fatalf("PostgreSQL for the test: %v", pgErr)
	}
	dir, err := ownedTempDir("powcoord-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := &Postgres{Host: "127.0.0.1", Dir: dir, t: t, bin: pgBin, runAs: pgRunAs}
	if err := copyTree(pgTemplate, filepath.Join(dir, "data")); err != nil {
		t.Fatalf("copying the initdb template: %v", err)
	}
	sock := filepath.Join(dir, "sock")
	if err := os.Mkdir(sock, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := chownToRunAs(sock); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	// A free port can be taken by someone else between our probe and the
	// server's bind: try a few.
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		if lastErr = p.start(port, sock); lastErr == nil {
			p.Port = port
			return p
		}
	}
	t.Fatalf("starting PostgreSQL: %v", lastErr)
	return nil
}

func (p *Postgres) start(port int, sock string) error {
	data := filepath.Join(p.Dir, "data")
	logFile := filepath.Join(p.Dir, "postgres.log")
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c max_connections=200", port, sock)
	out, err := pgCommand(p.bin, p.runAs, "pg_ctl", "-D", data, "-l", logFile, "-w", "-t", "30", "-o", opts, "start").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl start on port %d: %v: %s\n%s", port, err, strings.TrimSpace(string(out)), tailFile(logFile))
	}
	return nil
}

func (p *Postgres) stop() {
	data := filepath.Join(p.Dir, "data")
	if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); err != nil {
		return // never started, or already stopped
	}
	if err := p.Stop(); err != nil {
		p.t.Log(err)
	}
}

// Stop stops the server at once (pg_ctl stop -m immediate), as a crash
// or an outage would: clients get connection errors until Restart.
func (p *Postgres) Stop() error {
	data := filepath.Join(p.Dir, "data")
	out, err := pgCommand(p.bin, p.runAs, "pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", "30", "stop").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Restart starts a server stopped by Stop again, on the same port with
// the same data.
func (p *Postgres) Restart() error {
	return p.start(p.Port, filepath.Join(p.Dir, "sock"))
}

// URL returns a postgres:// URL for database name on this server, as the
// superuser postgres (trust authentication, no password).
func (p *Postgres) URL(name string) string {
	return fmt.Sprintf("postgres://postgres@%s:%d/%s?sslmode=disable", p.Host, p.Port, name)
}

// CreateDatabase creates a new empty database with a name unique on this
// server and returns its URL.
func (p *Postgres) CreateDatabase(t testing.TB) string {
	t.Helper()
	p.mu.Lock()
	p.nextDB++
	name := "powcoord_test_" + strconv.Itoa(p.nextDB)
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		t.Fatalf("connecting to PostgreSQL at %s: %v", p.URL("postgres"), err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("creating database %s: %v", name, err)
	}
	return p.URL(name)
}

// copyTree copies the directory src to dst (which must not exist),
// keeping file modes and, when running as root, giving everything to the
// PostgreSQL user.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.Mkdir(target, info.Mode().Perm()); err != nil {
				return err
			}
		case info.Mode().IsRegular():
			if err := copyFile(path, target, info.Mode().Perm()); err != nil {
				return err
			}
		default:
			return fmt.Errorf("copying %s: not a regular file or directory", path)
		}
		return chownToRunAs(target)
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func tailFile(path string) string {
	data, _ := os.ReadFile(path)
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return string(data)
}

// CPUTime returns the CPU time (user and system) the server has used so
// far: its postmaster's, its live processes' and that of the processes
// that have exited (the kernel adds them to the postmaster's children
// time when it reaps them). Benchmarks take the difference around a run
// to say what PostgreSQL spent on it. Linux only (it reads /proc).
func (p *Postgres) CPUTime() (time.Duration, error) {
	raw, err := os.ReadFile(filepath.Join(p.Dir, "data", "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("reading the postmaster's pid: %v", err)
	}
	first, _, _ := strings.Cut(string(raw), "\n")
	master, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return 0, fmt.Errorf("postmaster.pid of %s: %q is not a pid", p.Dir, first)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	var ticks int64
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := procStat(pid)
		if err != nil {
			continue // exited meanwhile, or not ours
		}
		switch {
		case pid == master:
			ticks += f.utime + f.stime + f.cutime + f.cstime
		case f.ppid == int64(master):
			ticks += f.utime + f.stime
		}
	}
	// USER_HZ is 100 on every Linux ABI Go supports.
	return time.Duration(ticks) * (time.Second / 100), nil
}

type statFields struct{ ppid, utime, stime, cutime, cstime int64 }

// procStat reads the fields of /proc/pid/stat CPUTime needs.
func procStat(pid int) (statFields, error) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return statFields{}, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(raw), ')')
	if i < 0 {
		return statFields{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(raw[i+1:]))
	// f[0] is field 3 (state): ppid is field 4, utime..cstime 14..17.
	if len(f) < 15 {
		return statFields{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	var v [5]int64
	for k, idx := range []int{1, 11, 12, 13, 14} {
		if v[k], err = strconv.ParseInt(f[idx], 10, 64); err != nil {
			return statFields{}, fmt.Errorf("/proc/%d/stat field %d: %v", pid, idx+3, err)
		}
	}
	return statFields{v[0], v[1], v[2], v[3], v[4]}, nil
}

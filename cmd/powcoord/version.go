package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// releaseVersion is the version of this source tree; a binary built from a
// tagged module reports the module version instead.
const releaseVersion = "0.1.0-dev"

// stampedVersion and stampedCommit are set by scripts/release.sh with
// -ldflags "-X main.stampedVersion=... -X main.stampedCommit=...". When
// empty (go build, go run, go install) the build information the Go
// toolchain records is used instead.
var stampedVersion, stampedCommit string

const versionUsage = `Usage: powcoord version

Prints the version, the Go toolchain, the platform and the commit the
binary was built from (stamped by scripts/release.sh, or read from the
build information when built from a git checkout).

Example:
  powcoord version
`

// runVersion prints the version of the binary.
func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), versionUsage) }
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("version: unexpected argument %q", fs.Arg(0))
	}
	fmt.Fprintln(stdout, versionString())
	return nil
}

// versionString is one line: "powcoord 0.1.0-dev (go1.26.0 linux/amd64, commit abc123 dirty)".
func versionString() string {
	v := releaseVersion
	extra := runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
	if stampedVersion != "" || stampedCommit != "" {
		if stampedVersion != "" {
			v = stampedVersion
		}
		if stampedCommit != "" {
			extra += ", commit " + stampedCommit
		}
		return fmt.Sprintf("powcoord %s (%s)", v, extra)
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if mv := bi.Main.Version; mv != "" && mv != "(devel)" {
			v = mv
		}
		var rev, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if rev != "" {
			if len(rev) > 12 {
				rev = rev[:12]
			}
			extra += ", commit " + rev
			if modified == "true" {
				extra += " dirty"
			}
		}
	}
	return fmt.Sprintf("powcoord %s (%s)", v, extra)
}

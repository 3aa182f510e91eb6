// Package cli is the policy binary's command line: `policy [serve]` runs
// the service; `policy test`, `policy check` and `policy replay` are the
// tools policy authors and operators run around it. main only calls Main.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/jitid/jitid/pkg/servicecmd"
)

// Exit codes shared by the subcommands.
const (
	ExitOK = 0
	// ExitFailed: the tool ran and found a problem (a failed case, an
	// invalid set, a replay that narrows with -fail-on-change).
	ExitFailed = 1
	// ExitUsage: bad flags, or the tool could not run (unreadable files,
	// audit service unreachable).
	ExitUsage = 2
)

// Env is what a command needs from the process.
type Env struct {
	Args   []string // without the program name
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
	// LookupEnv tells a variable set to the empty string (which empties
	// its flag: JITID_ADMIN_ADDR= turns the admin server off) from one
	// not set. When nil, a variable is set if Getenv returns it non-empty.
	LookupEnv func(string) (string, bool)
}

func (e Env) lookupEnv() func(string) (string, bool) {
	if e.LookupEnv != nil || e.Getenv == nil {
		return e.LookupEnv
	}
	return func(k string) (string, bool) {
		v := e.Getenv(k)
		return v, v != ""
	}
}

const usage = `usage:
  policy [serve] [flags]            run the policy service (policy serve -help, -version)
  policy test [flags] [cases...]    run YAML decision cases against a policy set
  policy check <path>...            validate policy sets against the schema
  policy replay [flags]             re-decide audited issuances with a candidate set
`

// Main runs the command in env.Args and returns the process exit code.
func Main(ctx context.Context, env Env) int {
	args := env.Args
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	code := ExitOK
	switch cmd {
	case "serve":
		err = serve(ctx, env, args)
	case "test":
		code, err = runTest(ctx, env, args)
	case "check":
		code, err = runCheck(env, args)
	case "replay":
		code, err = runReplay(ctx, env, args)
	case "help":
		fmt.Fprint(env.Stdout, usage)
		return ExitOK
	default:
		fmt.Fprintf(env.Stderr, "policy: unknown command %q\n%s", cmd, usage)
		return ExitUsage
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.Is(err, servicecmd.ErrVersion):
		fmt.Fprintln(env.Stdout, servicecmd.Version("policy"))
		return ExitOK
	case err != nil:
		fmt.Fprintf(env.Stderr, "policy %s: %v\n", cmd, err)
		if code == ExitOK {
			code = ExitUsage
		}
	}
	return code
}

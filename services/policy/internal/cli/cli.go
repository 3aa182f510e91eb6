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
}

const usage = `usage:
  policy [serve] [flags]            run the policy service (policy serve -help)
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
	case err != nil:
		fmt.Fprintf(env.Stderr, "policy %s: %v\n", cmd, err)
		if code == ExitOK {
			code = ExitUsage
		}
	}
	return code
}

// Package envflag lets every flag of a jitid binary be set from a
// JITID_-prefixed environment variable: flag "redis-addr" reads
// JITID_REDIS_ADDR. A flag given on the command line wins over the
// environment.
package envflag

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// Prefix is the environment prefix of every jitid setting.
const Prefix = "JITID_"

// EnvName returns the environment variable that sets flag name.
func EnvName(name string) string {
	return Prefix + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(name))
}

// Parse parses args into fs, then fills every flag not given in args from its
// environment variable, looked up with getenv (os.Getenv when nil). Each
// flag's usage gains the variable's name so that -help shows it.
func Parse(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if getenv == nil {
		getenv = os.Getenv
	}
	fs.VisitAll(func(f *flag.Flag) {
		f.Usage = fmt.Sprintf("%s (env %s)", f.Usage, EnvName(f.Name))
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] {
			return
		}
		v := getenv(EnvName(f.Name))
		if v == "" {
			return
		}
		if setErr := fs.Set(f.Name, v); setErr != nil {
			err = fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, setErr)
		}
	})
	return err
}

// Package envflag lets every flag of a jitid binary be set from a
// JITID_-prefixed environment variable: flag "redis-addr" reads
// JITID_REDIS_ADDR. A flag given on the command line wins over the
// environment. A variable that is set, even to the empty string, sets its
// flag: JITID_ADMIN_ADDR= turns the admin listener off as -admin-addr=
// does.
package envflag

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
)

// Prefix is the environment prefix of every jitid setting.
const Prefix = "JITID_"

// EnvName returns the environment variable that sets flag name.
func EnvName(name string) string {
	return Prefix + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(name))
}

// Parse parses args into fs, then fills every flag not given in args from its
// environment variable, looked up with lookupEnv (os.LookupEnv when nil).
// Flags named in commandLineOnly (such as -version, which ends the
// program) are never read from the environment. Each other flag's usage
// gains the variable's name so that -help shows it. Every bad variable is
// reported, not only the first.
func Parse(fs *flag.FlagSet, args []string, lookupEnv func(string) (string, bool), commandLineOnly ...string) error {
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	fromEnv := func(f *flag.Flag) bool { return !slices.Contains(commandLineOnly, f.Name) }
	fs.VisitAll(func(f *flag.Flag) {
		if fromEnv(f) {
			f.Usage = fmt.Sprintf("%s (env %s)", f.Usage, EnvName(f.Name))
		}
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || !fromEnv(f) {
			return
		}
		v, ok := lookupEnv(EnvName(f.Name))
		if !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, err))
		}
	})
	return errors.Join(errs...)
}

// MapLookup returns a lookup over m, for tests and for callers that build
// the environment themselves.
func MapLookup(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

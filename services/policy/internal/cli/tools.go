package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/jitid/jitid/pkg/servicecmd"
	auditv1 "github.com/jitid/jitid/proto/jitid/audit/v1"
	"github.com/jitid/jitid/services/policy/internal/policy"
	"github.com/jitid/jitid/services/policy/internal/policycase"
	"github.com/jitid/jitid/services/policy/internal/replay"
)

// runTest: policy test [-policy-file P] [-v] [cases...]. Without case
// arguments it runs every *.cases.yaml below -policy-file when that is a
// directory.
func runTest(ctx context.Context, env Env, args []string) (int, error) {
	fs := flag.NewFlagSet("policy test", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	policyFile := fs.String("policy-file", "", "policy set (a .cedar file or a directory); the built-in default set when empty")
	verbose := fs.Bool("v", false, "list passing cases too")
	fs.Usage = func() {
		fmt.Fprintln(env.Stderr, "usage: policy test [-policy-file dir] [-v] [cases.yaml|dir ...]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return ExitUsage, err
	}
	set, err := loadSet(*policyFile)
	if err != nil {
		return ExitFailed, fmt.Errorf("load policy set: %w", err)
	}
	paths := fs.Args()
	if len(paths) == 0 {
		if *policyFile == "" {
			return ExitUsage, errors.New("give case files, or a -policy-file directory that holds *.cases.yaml")
		}
		paths = []string{*policyFile}
	}
	var files []string
	for _, p := range paths {
		found, err := policycase.Discover(p)
		if err != nil {
			return ExitUsage, err
		}
		files = append(files, found...)
	}
	if len(files) == 0 {
		return ExitUsage, fmt.Errorf("no *%s files in %s", policycase.Suffix, strings.Join(paths, ", "))
	}
	failed, total := 0, 0
	for _, path := range files {
		f, err := policycase.Load(path)
		if err != nil {
			return ExitUsage, err
		}
		results := policycase.Run(ctx, set, f)
		total += len(results)
		failed += policycase.Report(env.Stdout, results, *verbose)
	}
	if failed > 0 {
		fmt.Fprintf(env.Stdout, "FAIL %d of %d cases (policy set %s)\n", failed, total, set.Version()[:12])
		return ExitFailed, nil
	}
	fmt.Fprintf(env.Stdout, "ok   %d cases (policy set %s)\n", total, set.Version()[:12])
	return ExitOK, nil
}

// runCheck: policy check <path>... validates each set and lists every
// fault, one per line, as file:line:col: policy "id": cause.
func runCheck(env Env, args []string) (int, error) {
	fs := flag.NewFlagSet("policy check", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() { fmt.Fprintln(env.Stderr, "usage: policy check <dir or .cedar file>...") }
	if err := fs.Parse(args); err != nil {
		return ExitUsage, err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return ExitUsage, errors.New("no policy set given")
	}
	code := ExitOK
	for _, p := range fs.Args() {
		set, err := policy.Load(p)
		if err != nil {
			code = ExitFailed
			for _, e := range flattenErrors(err) {
				fmt.Fprintln(env.Stdout, e)
			}
			continue
		}
		catalogue := "no scope catalogue"
		if c := set.Catalogue(); c != nil {
			catalogue = "scope catalogue " + filepath.Base(c.Name())
		}
		fmt.Fprintf(env.Stdout, "ok   %s: %d policies, schema %s, %s, version %s\n", p, len(set.PolicyIDs()), filepath.Base(set.Schema()), catalogue, set.Version()[:12])
		if set.Catalogue() == nil {
			fmt.Fprintf(env.Stdout, "warn %s: no %s: every scope is judged at the sensitivity the caller labels it and none is refused as unlisted\n", p, policy.CatalogueName)
		}
	}
	return code, nil
}

func flattenErrors(err error) []error {
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		return u.Unwrap()
	}
	return []error{err}
}

// runReplay: policy replay -audit-addr A -policy-file P -since 24h.
func runReplay(ctx context.Context, env Env, args []string) (int, error) {
	fs := flag.NewFlagSet("policy replay", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	auditAddr := fs.String("audit-addr", envOr(env, "JITID_AUDIT_ADDR", "127.0.0.1:50053"), "audit service gRPC address (env JITID_AUDIT_ADDR)")
	policyFile := fs.String("policy-file", "", "candidate policy set; the built-in default set when empty")
	since := fs.Duration("since", 24*time.Hour, "replay events of this last period")
	start := fs.String("start", "", "replay events from this RFC 3339 time (overrides -since)")
	end := fs.String("end", "", "replay events before this RFC 3339 time; now when empty")
	failOnChange := fs.Bool("fail-on-change", false, "exit 1 when any decision would now be denied or narrowed")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	var tc servicecmd.Common
	fs.StringVar(&tc.TLSCert, "tls-cert", envOr(env, "JITID_TLS_CERT", ""), "PEM X.509 SVID presented to the audit service; with -tls-key and -tls-bundle turns on mTLS (env JITID_TLS_CERT)")
	fs.StringVar(&tc.TLSKey, "tls-key", envOr(env, "JITID_TLS_KEY", ""), "PKCS#8 PEM key of -tls-cert (env JITID_TLS_KEY)")
	fs.StringVar(&tc.TLSBundle, "tls-bundle", envOr(env, "JITID_TLS_BUNDLE", ""), "PEM CA certificates the audit service is verified against (env JITID_TLS_BUNDLE)")
	fs.StringVar(&tc.SPIFFESocket, "spiffe-socket", envOr(env, "JITID_SPIFFE_SOCKET", ""), "SPIFFE Workload API endpoint, instead of the -tls-* files (env JITID_SPIFFE_SOCKET)")
	auditID := fs.String("audit-id", envOr(env, "JITID_AUDIT_ID", ""), "with mTLS, required: comma-separated SPIFFE IDs (or trust domains) the audit service may present (env JITID_AUDIT_ID)")
	if err := fs.Parse(args); err != nil {
		return ExitUsage, err
	}
	errs := tc.SourceErrors()
	switch {
	case tc.TLSEnabled() && *auditID == "":
		errs = append(errs, servicecmd.Invalid("audit-id", "is required with TLS"))
	case !tc.TLSEnabled() && *auditID != "":
		errs = append(errs, servicecmd.Invalid("audit-id", "needs TLS (-tls-cert, -tls-key, -tls-bundle or -spiffe-socket)"))
	}
	if err := errors.Join(errs...); err != nil {
		return ExitUsage, err
	}
	opts := replay.Options{Start: time.Now().Add(-*since)}
	var err error
	if *start != "" {
		if opts.Start, err = time.Parse(time.RFC3339, *start); err != nil {
			return ExitUsage, fmt.Errorf("-start %q: want RFC 3339", *start)
		}
	}
	if *end != "" {
		if opts.End, err = time.Parse(time.RFC3339, *end); err != nil {
			return ExitUsage, fmt.Errorf("-end %q: want RFC 3339", *end)
		}
	}
	set, err := loadSet(*policyFile)
	if err != nil {
		return ExitFailed, fmt.Errorf("load candidate policy set: %w", err)
	}
	creds := insecure.NewCredentials()
	tlsc, err := tc.OpenTLS(ctx, slog.New(slog.NewTextHandler(env.Stderr, nil)))
	if err != nil {
		return ExitUsage, err
	}
	defer func() { _ = tlsc.Close() }() // the replay's outcome is what the exit code reports
	if tlsc != nil {
		if creds, err = tlsc.ClientCredentials(servicecmd.SplitList(*auditID)); err != nil {
			return ExitUsage, servicecmd.Invalid("audit-id", "%v", err)
		}
	}
	conn, err := grpc.NewClient(*auditAddr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return ExitUsage, fmt.Errorf("audit service %s: %w", *auditAddr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	rep, err := replay.Run(ctx, auditv1.NewAuditServiceClient(conn), set, opts)
	if err != nil {
		return ExitUsage, err
	}
	replay.Write(env.Stdout, rep)
	if *failOnChange && rep.Counts[replay.Denied]+rep.Counts[replay.Narrowed] > 0 {
		return ExitFailed, nil
	}
	return ExitOK, nil
}

func envOr(env Env, key, def string) string {
	getenv := env.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

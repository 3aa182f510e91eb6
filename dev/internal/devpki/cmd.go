package devpki

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// Main runs `jitid-dev pki`: it parses args, runs Ensure and says what it
// wrote and what it kept.
func Main(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("jitid-dev pki", flag.ContinueOnError)
	fs.SetOutput(out)
	dir := fs.String("dir", ".jitid/pki", "directory of the CA and the SVIDs")
	td := fs.String("trust-domain", "jitid.local", "SPIFFE trust domain")
	validity := fs.Duration("svid-validity", DefaultSVIDValidity, "life of new SVIDs (renewed when a third is left)")
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: jitid-dev pki [flags]\n\n"+
			"Writes a development CA and X.509 SVIDs (ECDSA P-256, one spiffe:// URI SAN,\n"+
			"server and client auth) for issuer, policy, audit, platform (the demo platform),\n"+
			"platform-b (a second platform), "+
			"admin and auditor; keeps valid files and renews those near expiry.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("pki: unexpected arguments %q", fs.Args())
	}
	res, err := Ensure(Options{Dir: *dir, TrustDomain: *td, SVIDValidity: *validity})
	if err != nil {
		return err
	}
	issued := "nothing (every file valid)"
	if len(res.Issued) > 0 {
		issued = strings.Join(res.Issued, ", ")
	}
	fmt.Fprintf(out, "pki: %s (trust domain %s); issued: %s\n", *dir, *td, issued)
	fmt.Fprintf(out, "  %-8s %s\n", "bundle", res.CA)
	for _, id := range Identities(*td) {
		p := res.SVIDs[id.Name]
		fmt.Fprintf(out, "  %-8s %s  %s %s\n", id.Name, id.ID, p.Cert, p.Key)
	}
	return nil
}

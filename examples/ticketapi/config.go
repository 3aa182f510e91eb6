package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"

	"github.com/jitid/jitid/pkg/envflag"
)

// config is the server's configuration, from flags or JITID_ variables.
type config struct {
	Addr         string
	PublicURL    string
	Issuer       string
	Audience     string
	IssuerAddr   string
	JWKSURL      string
	DiscoverFrom string
	NATSURL      string
	Stream       string
	Subjects     string
	LogLevel     string
	LogFormat    string
	// TLSCert, TLSKey and TLSBundle are this API's X.509 SVID, its key and
	// the trust bundle, for mTLS to the issuer; IssuerID is the SPIFFE ID
	// (or trust domain) the issuer must present.
	TLSCert, TLSKey, TLSBundle string
	IssuerID                   string
	// Insecure dials the issuer in plaintext (a development issuer that
	// authenticates callers by bearer token only).
	Insecure bool
}

func parseConfig(args []string, getenv func(string) string, out io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("ticketapi", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:8080", "HTTP listen address of the ticket API")
	fs.StringVar(&c.PublicURL, "public-url", "", "scheme://host the API is reached at, for DPoP proofs (from the request when empty)")
	fs.StringVar(&c.Issuer, "issuer", "https://jitid.local", "the iss of accepted credentials (the issuer's -issuer)")
	fs.StringVar(&c.Audience, "audience", "tickets-api", "this API's name: credentials must carry it in aud")
	fs.StringVar(&c.IssuerAddr, "issuer-addr", "127.0.0.1:50051", "the issuer's gRPC address: online introspection, and keys when -jwks-url and -discover-from are empty")
	fs.StringVar(&c.JWKSURL, "jwks-url", "", "the issuer's JWKS URL (e.g. http://127.0.0.1:9091/.well-known/jwks.json); gRPC GetSigningKeys when empty")
	fs.StringVar(&c.DiscoverFrom, "discover-from", "", "base URL of the issuer's RFC 8414 metadata (e.g. http://127.0.0.1:9091), to find its jwks_uri")
	fs.StringVar(&c.NATSURL, "nats-url", "nats://127.0.0.1:4222", "NATS with the issuer's event stream, for revocations; empty: none (revoked credentials pass reads until they expire)")
	fs.StringVar(&c.Stream, "stream", "JITID_EVENTS", "JetStream stream of lifecycle events")
	fs.StringVar(&c.Subjects, "subject-prefix", "jitid.events", "subject prefix of lifecycle events")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM X.509 SVID of this API, presented to the issuer (with -tls-key and -tls-bundle)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PKCS#8 PEM key of -tls-cert (mode 0600)")
	fs.StringVar(&c.TLSBundle, "tls-bundle", "", "PEM CA certificates the issuer's certificate is verified against")
	fs.StringVar(&c.IssuerID, "issuer-id", "", "SPIFFE ID (or trust domain, spiffe://td) the issuer must present; required with -tls-*")
	fs.BoolVar(&c.Insecure, "insecure", false, "dial the issuer in plaintext instead of mTLS")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "json", "json or text")
	lookup := func(k string) (string, bool) { v := getenv(k); return v, v != "" }
	if err := envflag.Parse(fs, args, lookup); err != nil {
		return c, err
	}
	return c, c.validate()
}

func (c config) validate() error {
	var errs []error
	if c.Addr == "" || c.Issuer == "" || c.Audience == "" {
		errs = append(errs, errors.New("-addr, -issuer and -audience are required"))
	}
	if c.IssuerAddr == "" {
		errs = append(errs, errors.New("-issuer-addr is required (purchases are introspected)"))
	}
	for name, v := range map[string]string{"jwks-url": c.JWKSURL, "discover-from": c.DiscoverFrom, "public-url": c.PublicURL} {
		if v == "" {
			continue
		}
		if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("-%s %q: want an http(s) URL", name, v))
		}
	}
	tls := c.TLSCert != "" || c.TLSKey != "" || c.TLSBundle != ""
	switch {
	case tls && (c.TLSCert == "" || c.TLSKey == "" || c.TLSBundle == ""):
		errs = append(errs, errors.New("-tls-cert, -tls-key and -tls-bundle go together"))
	case tls && c.IssuerID == "":
		errs = append(errs, errors.New("-issuer-id is required with -tls-* (the issuer's SPIFFE ID)"))
	case tls && c.Insecure:
		errs = append(errs, errors.New("-insecure cannot be combined with -tls-*"))
	case !tls && !c.Insecure:
		errs = append(errs, errors.New("the issuer is reached over mTLS: give -tls-cert, -tls-key, -tls-bundle and -issuer-id (or -insecure for a plaintext development issuer)"))
	}
	if c.JWKSURL != "" && c.DiscoverFrom != "" {
		errs = append(errs, errors.New("-jwks-url and -discover-from are exclusive"))
	}
	if _, err := c.level(); err != nil {
		errs = append(errs, err)
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		errs = append(errs, fmt.Errorf("-log-format %q: want json or text", c.LogFormat))
	}
	return errors.Join(errs...)
}

func (c config) level() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(c.LogLevel))); err != nil {
		return l, fmt.Errorf("-log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	return l, nil
}

func (c config) logger(w io.Writer) *slog.Logger {
	l, _ := c.level()
	o := &slog.HandlerOptions{Level: l}
	if c.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, o))
	}
	return slog.New(slog.NewJSONHandler(w, o))
}

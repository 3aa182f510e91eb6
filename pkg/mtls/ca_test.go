package mtls_test

import (
	"testing"

	"github.com/jitid/jitid/pkg/mtls"
	"github.com/jitid/jitid/testkit/testca"
)

func newCA(t *testing.T, name string) *testca.CA { return testca.New(t, name) }

// writeSVID writes an SVID for id issued by ca, its key (mode 0600) and ca's
// bundle into dir, replacing what is there, and returns a FileConfig naming
// them.
func writeSVID(t *testing.T, dir string, ca *testca.CA, id string) mtls.FileConfig {
	t.Helper()
	f := ca.WriteSVID(t, dir, id)
	return mtls.FileConfig{CertFile: f.Cert, KeyFile: f.Key, BundleFile: f.Bundle}
}

// fileSource is a FileSource for an SVID of id issued by ca, closed when the
// test ends.
func fileSource(t *testing.T, ca *testca.CA, id string) *mtls.FileSource {
	t.Helper()
	src, err := mtls.NewFileSource(writeSVID(t, t.TempDir(), ca, id))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := src.Close(); err != nil {
			t.Error(err)
		}
	})
	return src
}

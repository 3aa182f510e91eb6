// Package policies holds the policy set and the Cedar schema jitid ships,
// embedded in the binary. The set is used when no -policy-file is given; the
// schema validates every set that does not bring its own. default.cedar and
// jitid.cedarschema document the model policies are written against.
package policies

import (
	"embed"
	"io/fs"
)

//go:embed *.cedar *.cedarschema scopes.yaml
var files embed.FS

// Source names the built-in set in GetPolicySet and logs.
const Source = "builtin:default.cedar"

// SchemaName is the file name of the built-in schema.
const SchemaName = "jitid.cedarschema"

// Default returns the built-in policy files and schema.
func Default() fs.FS { return files }

// Schema returns the built-in Cedar schema of jitid's model.
func Schema() []byte {
	b, err := files.ReadFile(SchemaName)
	if err != nil {
		// The file is embedded at build time; it cannot be missing.
		panic(err)
	}
	return b
}

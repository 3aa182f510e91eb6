// Package policies holds the policy set jitid ships, embedded in the binary
// and used when no -policy-file is given. default.cedar documents the Cedar
// model that policies are written against.
package policies

import (
	"embed"
	"io/fs"
)

//go:embed *.cedar
var files embed.FS

// Source names the built-in set in GetPolicySet and logs.
const Source = "builtin:default.cedar"

// Default returns the built-in policy files.
func Default() fs.FS { return files }

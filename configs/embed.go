// Package configs holds dpfw's example configurations; the default one is
// embedded in the binary (dpfw run with no --config uses it).
package configs

import _ "embed"

// Default is configs/default.yaml: two net_tap ports joined as one link.
//
//go:embed default.yaml
var Default []byte

// DefaultName is how errors and logs name the embedded default.
const DefaultName = "embedded:configs/default.yaml"

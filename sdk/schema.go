package sdk

import dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"

// schemaOf derives the schema of impl's limits (and settings, when impl
// declares them).
func schemaOf[L any](impl Subsystem[L]) *dwv1.Schema {
	_ = impl
	return nil
}

// Command dw is the dw host and its client: `dw serve` runs the host; the
// other subcommands talk to a running host over its HTTP API (DW_ADDR,
// DW_TOKEN).
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "dw:", err)
		os.Exit(exitCode(err))
	}
}

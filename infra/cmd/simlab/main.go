// Command simlab is the project's own CLI: it validates stack files without
// the Pulumi CLI and hosts the lab's helper commands. The Pulumi program
// itself is the repository's root package.
package main

import (
	"os"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		os.Exit(exitCode(err))
	}
}

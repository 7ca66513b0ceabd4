// Command simulator is the network simulator: it replays datasets of records from simulated network
// elements to a system under test, through Kafka, with controller, workers, sink and an all-in-one
// mode. The subcommands live in package cli.
package main

import (
	"os"

	"github.com/simlab/simlab/simulator/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}

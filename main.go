// Command simlab is the Pulumi program that builds a whole load-test lab as one stack.
// Everything happens in package infra; this file only hands the Pulumi context over.
package main

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/infra"
)

func main() {
	pulumi.Run(infra.Build)
}

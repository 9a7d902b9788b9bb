// Command pulselake is the single binary of the pulselake health-sensor data platform.
// It parses flags, loads configuration and hands over to the packages under internal/;
// it holds no logic of its own.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

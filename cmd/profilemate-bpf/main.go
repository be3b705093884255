// Command profilemate-bpf attaches to a running vLLM server and times every
// forward pass with eBPF: see --help and the README.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Set at build time by the Makefile (-ldflags -X).
var (
	version = "dev"
	commit  = "unknown"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, errHelp) {
		fmt.Fprintln(os.Stderr, "profilemate-bpf:", err)
	}
	os.Exit(codeOf(err))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "check" {
		return runCheck(args[1:], stdout, stderr)
	}
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if cfg.version {
		fmt.Fprintf(stdout, "profilemate-bpf %s (commit %s)\n", version, commit)
		return nil
	}
	if err := checkPrivileges(); err != nil {
		return err
	}
	if err := checkKernel(); err != nil {
		return err
	}
	return trace(ctx, cfg, stdout, stderr)
}

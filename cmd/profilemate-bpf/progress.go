package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/profilemate/profilemate-bpf/tracer"
)

// isTerminal reports whether w is a terminal, where a progress line that
// rewrites itself is welcome (and in a log file it is not).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// showProgress redraws a progress line twice a second on a terminal, and ends
// the trace early (cancel) once every traced process has exited: there is
// nothing left to wait for. The returned function stops it.
func showProgress(ctx context.Context, cancel context.CancelFunc, w io.Writer, total time.Duration, col *collector, tr *tracer.Tracer) func() {
	tty := isTerminal(w)
	start := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				if tty {
					fmt.Fprint(w, "\r\033[K")
				}
				return
			case <-tick.C:
			}
			procs := tr.Processes()
			alive := 0
			for _, p := range procs {
				if !p.Exited {
					alive++
				}
			}
			if alive == 0 && ctx.Err() == nil {
				fmt.Fprintln(w, "\nprofilemate-bpf: every traced process has exited; ending the trace")
				cancel()
			}
			if tty {
				el := time.Since(start).Truncate(time.Second)
				fmt.Fprintf(w, "\r\033[Ktracing %v / %v: %d forward passes, %d processes", el, total, col.count(), alive)
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

package main

import "errors"

// Exit codes. Each failure a user can fix has its own, so scripts can tell
// them apart.
const (
	exitOK          = 0
	exitFailure     = 1 // anything not listed below
	exitUsage       = 2 // bad flags or arguments
	exitPrivilege   = 3 // not root and lacking CAP_BPF/CAP_PERFMON
	exitKernel      = 4 // kernel without BTF, ring buffers or uprobes
	exitNoProcess   = 5 // --pid names no process
	exitNoCUDA      = 6 // no CUDA library in the process tree
	exitOutput      = 7 // the output directory cannot be written
	exitNotPossible = 8 // `check` found that tracing cannot work
)

// exitError carries the exit code with the message for the user.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func fail(code int, err error) error { return &exitError{code, err} }

// codeOf maps an error to its exit code. Help asked for is no failure.
func codeOf(err error) int {
	if err == nil || errors.Is(err, errHelp) {
		return exitOK
	}
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	return exitFailure
}

package tracer

// The eBPF objects are generated from bpf/ and committed (profilemate_x86_bpfel.*)
// so that `go build` needs no clang; `make generate-check` verifies they match.
//go:generate go tool bpf2go -target amd64 -type step_record -type sched_record -type proc_state -type usdt_spec -type usdt_arg profilemate ../bpf/profilemate.bpf.c -- -I../bpf -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror

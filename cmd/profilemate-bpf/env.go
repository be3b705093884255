package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
)

// Capability bits from linux/capability.h.
const (
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

// effectiveCaps reads the effective capability set from /proc/self/status.
func effectiveCaps() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("no CapEff line in /proc/self/status")
}

// checkPrivileges fails unless the process may load tracing programs:
// CAP_BPF with CAP_PERFMON (kernel 5.8+), or CAP_SYS_ADMIN.
func checkPrivileges() error {
	caps, err := effectiveCaps()
	if err != nil {
		return fail(exitPrivilege, fmt.Errorf("cannot read capabilities: %w", err))
	}
	if checkCaps(caps).ok {
		return nil
	}
	return fail(exitPrivilege, errors.New("profilemate-bpf needs root, or CAP_BPF and CAP_PERFMON: run it with sudo"))
}

// btfPath is where the kernel exposes its own type information.
const btfPath = "/sys/kernel/btf/vmlinux"

// checkKernel fails when the kernel lacks what the programs need.
func checkKernel() error {
	if !checkBTF(btfPath).ok {
		return fail(exitKernel, fmt.Errorf("this kernel exposes no BTF (%s): it needs CONFIG_DEBUG_INFO_BTF=y (kernel 5.5+)", btfPath))
	}
	if err := features.HaveMapType(ebpf.RingBuf); err != nil {
		return fail(exitKernel, fmt.Errorf("this kernel has no BPF ring buffer (needs 5.8+): %w", err))
	}
	return nil
}

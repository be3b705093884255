package tracer

// CheckLoad loads and releases the eBPF programs: the surest test that this
// kernel and these privileges allow tracing.
func CheckLoad() error {
	objs, err := loadObjects()
	if err != nil {
		return err
	}
	return objs.Close()
}

# Sourced by validate.sh and validate_tp.sh: copy_out DIR RUN... copies the
# results worth keeping from DIR into OUT, when OUT is set: validate.log,
# table.txt, report.json, and the named run folders as runs.tar.gz (four
# files, what the device tool brings back). Both scripts call it on EXIT.
copy_out() {
    [ -n "${OUT:-}" ] || return 0
    local dir=$1 f runs=()
    shift
    mkdir -p "$OUT"
    for f in validate.log table.txt report.json; do [ -f "$dir/$f" ] && cp -f "$dir/$f" "$OUT/$f"; done
    for f in "$@"; do [ -d "$dir/$f" ] && runs+=("$f"); done
    [ ${#runs[@]} -gt 0 ] && tar -czf "$OUT/runs.tar.gz" -C "$dir" --exclude='*.json.tmp' "${runs[@]}"
    return 0
}

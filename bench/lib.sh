# Shared by the benchmark harnesses: `source bench/lib.sh` from the repo root.

# The sup binary to measure: $SUP_BIN, or target/release/sup (built if missing).
resolve_sup_bin() {
    SUP_BIN="${SUP_BIN:-target/release/sup}"
    if [[ ! -x "$SUP_BIN" ]]; then
        echo "[bench] $SUP_BIN not found, building it" >&2
        cargo build --release
        SUP_BIN=target/release/sup
    fi
    SUP_BIN="$(realpath "$SUP_BIN")"
    export SUP_BIN
}

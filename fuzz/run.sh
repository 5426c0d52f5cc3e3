#!/usr/bin/env bash
# Fuzzes one target for SECONDS, then merges what it found into the
# committed, minimised corpus fuzz/corpus/TARGET (the manual, "Fuzzing").
#
#   fuzz/run.sh TARGET SECONDS     e.g. fuzz/run.sh request 600
#   fuzz/run.sh TARGET 0           only merge what fuzz/work/TARGET holds
#   fuzz/run.sh list               the targets
#
# The route: cargo-fuzz (libFuzzer) on the stable toolchain with
# `--sanitizer none`, which passes no -Z flag, so no nightly is needed;
# Rust's own bounds and overflow checks (debug assertions are on) stand in
# for AddressSanitizer in this safe-Rust code base. A crash stops the run
# and leaves its input in fuzz/artifacts/TARGET/: fix it, add a unit test
# named after what it fixes, and copy the input to fuzz/regressions/TARGET/
# so that `cargo test --test corpus` replays it for good.
set -euo pipefail
cd "$(dirname "$0")"
targets=(request response domains hosts adblock rpz config xfr ofac)
if [ "${1:-}" = list ]; then printf '%s\n' "${targets[@]}"; exit 0; fi
if [ $# -ne 2 ] || [[ ! " ${targets[*]} " =~ " $1 " ]] || ! [[ $2 =~ ^[0-9]+$ ]]; then
  echo "usage: fuzz/run.sh TARGET SECONDS   (TARGET: ${targets[*]})" >&2
  exit 2
fi
target=$1 seconds=$2
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# Other work shares the machine: fuzz at low priority, on one core.
run() { nice -n 10 cargo fuzz run --sanitizer none "$target" "$@"; }

work=work/$target seeds=seeds/$target corpus=corpus/$target
mkdir -p "$work" "$corpus" "regressions/$target"
rm -rf "$seeds" && python3 seeds.py seeds "$target"
# New inputs go to the first directory (work/, ignored by git); the others are read.
if [ "$seconds" -gt 0 ]; then
  run "$work" "$corpus" "$seeds" "regressions/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
    -print_final_stats=1 2>&1 | tee "work/$target.log"
fi

# Merge: the smallest set that keeps every feature, or, past $CAP files,
# the $CAP inputs that keep the most (cap.py reads the merge's control file).
CAP=${CAP:-300}
merged=$(mktemp -d) control=$(mktemp)
run "$merged" "$corpus" "$work" "$seeds" -- -merge=1 -merge_control_file="$control" 2>&1 | tail -n 3
if [ "$(ls "$merged" | wc -l)" -gt "$CAP" ]; then
  rm -rf "$merged" && python3 cap.py "$control" "$merged" "$CAP"
fi
rm -rf "$corpus" "$control" && mv "$merged" "$corpus" && chmod 755 "$corpus"
echo "corpus/$target: $(ls "$corpus" | wc -l) files, $(du -cb "$corpus"/* | tail -n 1 | cut -f1) bytes"

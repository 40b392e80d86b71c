#!/usr/bin/env bash
# Stage 2 of the guest's mutation run (TESTING.md). cargo-mutants runs the guest's own unit
# tests natively (stage 1); it cannot rebuild the component for wasm32-wasip2. This script takes
# every mutant stage 1 missed, applies it to a scratch worktree, builds the component, and runs
# tests/component.rs against it (`KOSMO_TEST_COMPONENT`), so the host is never rebuilt.
#
#   tests/mutation/component-stage.sh <stage-1 output dir>/mutants.out
#
# Writes <that dir>/component-stage.txt: one `caught|missed|timeout|unviable <mutant>` per line.
set -euo pipefail

out=$(cd "${1:?usage: component-stage.sh <stage-1 mutants.out directory>}" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
target=${KOSMO_MUTANTS_WASM_TARGET:-${CARGO_TARGET_DIR:-$root/target}/mutants-wasm}
results="$out/component-stage.txt"
: >"$results"

# The component tests, built once for the host.
test_bin=$(cd "$root" && cargo test --release -p klaviyo-plugin --test component --no-run \
  --message-format=json 2>/dev/null |
  jq -r 'select(.reason == "compiler-artifact" and .target.name == "component" and .executable != null) | .executable' |
  tail -n 1)
[ -x "$test_bin" ] || { echo "could not build tests/component.rs" >&2; exit 1; }

work=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$work/tree" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git -C "$root" worktree add --detach "$work/tree" HEAD >/dev/null
tree="$work/tree"
wasm="$target/wasm32-wasip2/release/klaviyo_plugin.wasm"

build() {
  (cd "$tree" && timeout 900 cargo build --quiet --release --target wasm32-wasip2 \
    -p klaviyo-plugin --target-dir "$target") >"$work/build.log" 2>&1
}
run_tests() {
  (cd "$root" && KOSMO_TEST_COMPONENT="$wasm" timeout "${KOSMO_MUTANTS_TEST_TIMEOUT:-300}" \
    "$test_bin" --test-threads 8) >"$work/test.log" 2>&1
}

# Baseline: the unmutated component passes every test, or no outcome below means anything.
build || { cat "$work/build.log" >&2; exit 1; }
run_tests || { tail -n 40 "$work/test.log" >&2; echo "baseline failed" >&2; exit 1; }

jq -r '.outcomes[] | select(.summary == "MissedMutant") | [.scenario.Mutant.file, .diff_path, .scenario.Mutant.name] | @tsv' \
  "$out/outcomes.json" |
  while IFS=$'\t' read -r file diff name; do
    git -C "$tree" checkout --quiet -- .
    if ! (cd "$tree" && patch --quiet -p0 "$file" <"$out/$diff") >/dev/null 2>&1; then
      echo "unviable $name (the diff no longer applies)" | tee -a "$results"
      continue
    fi
    if ! build; then
      echo "unviable $name" | tee -a "$results"
      continue
    fi
    status=0
    run_tests || status=$?
    case $status in
      0) verdict=missed ;;
      124) verdict=timeout ;;
      *) verdict=caught ;;
    esac
    echo "$verdict $name" | tee -a "$results"
  done
git -C "$tree" checkout --quiet -- .
echo "component stage: $(cut -d' ' -f1 "$results" | sort | uniq -c | tr '\n' ' ')"

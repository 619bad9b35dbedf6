#!/usr/bin/env bash
# Print what a change does to every stack's plan: `tierkit validate --json` on this checkout and on
# BASE (default: origin/main), the plan of each stack side by side as a unified diff.
# Exit 0 with or without differences (the diff is for the reviewer); exit 2 when a stack does not
# validate on this checkout (`tierkit validate` has already printed why).
# Usage: examples/ci/plan-diff.sh [BASE]
set -euo pipefail
base=${1:-origin/main}
root=$(git rev-parse --show-toplevel)
cd "$root"
work=$(mktemp -d)
trap 'git worktree remove --force "$work/base" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

plans() {  # plans DIR OUT: each stack's plan under DIR, as JSON files in OUT
  local dir=$1 out=$2 file stack
  mkdir -p "$out"
  for file in "$dir"/stacks/Pulumi.*.yaml; do
    stack=${file##*/Pulumi.}
    stack=${stack%.yaml}
    (cd "$dir" && PYTHONPATH="$dir" python -m tierkit validate --stack "$stack" --json) \
      | python -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["plan"], indent=2, sort_keys=True))' \
      >"$out/$stack.json"
  done
}

plans "$root" "$work/head" || exit 2
if git worktree add --detach "$work/base" "$base" >/dev/null 2>&1; then
  plans "$work/base" "$work/old" 2>/dev/null || echo "plan-diff: $base has a stack that does not validate; comparing what does"
else
  echo "plan-diff: $base is not a revision here (fetch it first); showing this checkout's plans only"
  mkdir -p "$work/old"
fi
if diff -ru --label "$base" --label HEAD "$work/old" "$work/head"; then
  echo "plan-diff: no plan changed against $base"
fi

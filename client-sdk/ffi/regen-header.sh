#!/usr/bin/env bash
# Regenerates include/outpost.h from the crate's source with cbindgen 0.29.4.
#   regen-header.sh          write the header
#   regen-header.sh --check  fail if the checked-in header is stale
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
version="0.29.4"
if [[ "$(cbindgen --version 2>/dev/null || true)" != "cbindgen $version" ]]; then
  cargo install --quiet --locked "cbindgen@$version"
fi
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
cbindgen --quiet --config cbindgen.toml --crate outpost-client-ffi --output "$out" .
if [[ "${1:-}" == "--check" ]]; then
  if ! diff -u include/outpost.h "$out"; then
    echo "client-sdk/ffi/include/outpost.h is stale: run client-sdk/ffi/regen-header.sh" >&2
    exit 1
  fi
else
  cp "$out" include/outpost.h
fi

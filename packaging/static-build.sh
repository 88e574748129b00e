#!/bin/sh
# Builds a static musl ferry: the binary for packaging/container/Containerfile and the smallest
# build we know how to make.
#
#   packaging/static-build.sh [--lean] [TARGET]       (TARGET: x86_64-unknown-linux-musl)
#
# Plain: the stable toolchain and its prebuilt std (`rustup target add TARGET`).
# --lean: nightly rebuilds std without its backtrace symbolizer (gimli, addr2line, miniz):
#   a stripped binary has no symbols for it to read anyway. On x86_64 this takes the binary
#   from about 1.2 MB to 1.03 MB and idle RSS from 1.1-1.2 MiB to about 1.04 MiB
#   (docs/BENCHMARKS.md).
#   On aarch64 musl: 1,052,840 to 919,408 bytes. Needs `rustup component add rust-src
#   --toolchain nightly` and, because nightly ships no prebuilt std for musl targets, the
#   stable toolchain's musl target for its C runtime objects (crt1.o, libc.a, libunwind.a).
# For another TARGET, set CARGO_TARGET_<TRIPLE>_LINKER to a C compiler for it.
# The binary lands in target/TARGET/release/ferry.
set -eu
cd "$(dirname "$0")/.."

lean=no
if [ "${1:-}" = "--lean" ]; then
  lean=yes
  shift
fi
target=${1:-x86_64-unknown-linux-musl}

if [ "$lean" = no ]; then
  cargo build --release --locked --target "$target"
else
  # rustc finds a target's C runtime in its sysroot; nightly has none for musl targets, so
  # it gets a sysroot of its own that borrows stable's (std itself is built from source).
  crt="$(rustc +stable --print sysroot)/lib/rustlib/$target/lib/self-contained"
  if [ ! -f "$crt/libc.a" ]; then
    echo "no musl C runtime in $crt: run 'rustup target add $target'" >&2
    exit 1
  fi
  sysroot="target/lean-sysroot"
  rm -rf "$sysroot/lib/rustlib/$target"
  mkdir -p "$sysroot/lib/rustlib/$target/lib"
  ln -s "$crt" "$sysroot/lib/rustlib/$target/lib/self-contained"
  RUSTFLAGS="--sysroot $PWD/$sysroot" \
    cargo +nightly build --release --locked --target "$target" \
    -Z build-std=std,panic_unwind -Z build-std-features=panic-unwind
fi
ls -l "target/$target/release/ferry"

#!/bin/sh
# Builds a static musl ferry: the binary for packaging/container/Containerfile and the smallest
# build we know how to make.
#
#   packaging/static-build.sh [--lean] [--tls] [--api] [TARGET]
#   (TARGET: x86_64-unknown-linux-musl)
#
# Plain: the stable toolchain and its prebuilt std (`rustup target add TARGET`).
# --lean: nightly, for the smallest binary (numbers in docs/BENCHMARKS.md, "The lean build"):
#   - std rebuilt without its backtrace symbolizer (gimli, addr2line, miniz: a stripped
#     binary has no symbols for it to read) and with its optimize_for_size variants;
#   - all code built for size (opt-level "z"), but httparse (opt-level 3, 1 KB more);
#   - frame pointers (unwind tables a third smaller), relative relocations packed (RELR,
#     which musl's static-PIE start-up applies since 1.2.4), identical functions folded
#     (nightly's lld, --icf=all).
#   Same behaviour; the cost is speed: user-space instructions per request +73 %, ferry's
#   CPU time per request (the kernel's included) +2 % on x86_64.
#   Needs `rustup component add rust-src --toolchain nightly` and, because nightly ships no
#   prebuilt std for musl targets, the stable toolchain's musl target for its C runtime
#   objects (crt1.o, libc.a, libunwind.a).
# --tls: with the `tls` feature (DESIGN §8). ring, its crypto, has C and assembly to compile
#   for TARGET: set CC_<triple> to a C compiler for it; for x86_64 musl the host's gcc does
#   (ring's C takes nothing from libc but memcpy and memset) and is the default.
# --api: with the `api` feature, the control API (DESIGN §9).
# For another TARGET, set CARGO_TARGET_<TRIPLE>_LINKER to a C compiler for it.
# The binary lands in target/TARGET/release/ferry.
set -eu
cd "$(dirname "$0")/.."

lean=no
features=
while [ $# -gt 0 ]; do
  case "$1" in
    --lean) lean=yes ;;
    --tls) features="${features:+$features,}tls" ;;
    --api) features="${features:+$features,}api" ;;
    *) break ;;
  esac
  shift
done
target=${1:-x86_64-unknown-linux-musl}
if [ "${features#*tls}" != "$features" ] && [ "$target" = x86_64-unknown-linux-musl ]; then
  export CC_x86_64_unknown_linux_musl="${CC_x86_64_unknown_linux_musl:-gcc}"
fi

if [ "$lean" = no ]; then
  cargo build --release --locked --target "$target" --features "$features"
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
  # nightly's own lld (through its gcc-ld wrapper) for --icf; the C compiler still drives it.
  host=$(rustc +nightly -vV | sed -n 's/^host: //p')
  gcc_ld="$(rustc +nightly --print sysroot)/lib/rustlib/$host/bin/gcc-ld"
  RUSTFLAGS="--sysroot $PWD/$sysroot -C force-frame-pointers=yes \
-C link-arg=-fuse-ld=lld -C link-arg=-B$gcc_ld -C link-arg=-Wl,--icf=all \
-C link-arg=-Wl,-z,pack-relative-relocs" \
  CARGO_PROFILE_RELEASE_OPT_LEVEL=z \
    cargo +nightly build --release --locked --target "$target" --features "$features" \
    --config 'profile.release.package.httparse.opt-level=3' \
    -Z build-std=std,panic_unwind -Z build-std-features=panic-unwind,optimize_for_size
fi
ls -l "target/$target/release/ferry"

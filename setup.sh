#!/usr/bin/env bash
# Installs what building and testing moqring needs when it is missing, then does nothing
# more: cmake, a C++ compiler and libclang for quiche's vendored BoringSSL, pkg-config.
# Debian/Ubuntu (apt-get); as root, or through sudo. Safe to run every time: when
# everything is there it only checks.
set -euo pipefail

need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v c++ >/dev/null 2>&1 || need+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || need+=(libclang-dev)  # libclang-cpp does not count: bindgen needs libclang.so
[ ${#need[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup.sh: please install ${need[*]} (or your system's equivalents) and run again" >&2
  exit 1
fi
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "setup.sh: need root or sudo to install ${need[*]}" >&2; exit 1; }
  as_root=(sudo)
fi
echo "setup.sh: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq "${need[@]}" >/dev/null

#!/usr/bin/env bash
# Installs what isrn needs to build, test and benchmark, from Debian's packages only.
# Safe to run again; installs nothing that is already there.
set -euo pipefail
packages=(
  g++ cmake ninja-build ccache git          # toolchain
  libeigen3-dev                             # CPU kernels (GEMM)
  libstb-dev                                # image decoding/encoding
  doctest-dev                               # tests
  libbenchmark-dev                          # microbenchmarks
  nlohmann-json3-dev                        # configuration, checkpoint headers, golden files
  libcli11-dev                              # command-line parsing of the tools
  libmatio-dev                              # the official WIDER FACE .mat evaluation files
  python3-torch python3-numpy python3-scipy # golden files and PyTorch comparisons (not needed to build)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: everything is installed"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install_deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install_deps: done"

#!/usr/bin/env bash
# Installs the Debian packages that the Caffe build and the tools need, only those missing.
# Uses sudo when not root. A machine that has them all is left alone (no apt-get at all).
set -euo pipefail
packages=(
  build-essential python3-dev python3-venv
  libboost-system-dev libboost-thread-dev libboost-filesystem-dev libboost-regex-dev
  libboost-python-dev libprotobuf-dev protobuf-compiler libgoogle-glog-dev libgflags-dev
  libhdf5-dev liblmdb-dev libopenblas-dev
  graphviz  # caffe.draw's network diagrams in the run reports
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "[install_debs] installing: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"

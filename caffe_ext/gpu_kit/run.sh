#!/usr/bin/env bash
# The GPU kit's one command: bash gpu-kit/run.sh [--out DIR] [--cpu]
# Finds the CUDA 13 runtime libraries (cudart, cuBLAS, cuRAND) the machine has, as Python
# wheels (nvidia/cu13/lib in python3's site-packages) or in a CUDA install, puts them and the
# kit's own libraries on the library path, then runs check.py. Set KIT_CUDA_LIBS=DIR to
# name the folder yourself. Without a GPU it runs the CPU-side steps and says "no GPU".
set -uo pipefail
kit="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-python3}"
# The binaries and libraries travel compressed; unpack once (staged, then renamed).
if [ ! -d "$kit/lib" ]; then
  rm -rf "$kit/lib.partial"
  "$python" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
    "$kit/lib.tar.xz" "$kit/lib.partial" || { echo "[gpu-kit] cannot unpack $kit/lib.tar.xz" >&2; exit 2; }
  mv "$kit/lib.partial/lib" "$kit/lib" && rmdir "$kit/lib.partial"
fi
cuda_libs="${KIT_CUDA_LIBS:-}"
if [ -z "$cuda_libs" ]; then
  candidates=$("$python" - <<'PY' 2>/dev/null
import site, sys
for root in site.getsitepackages() + [site.getusersitepackages()] + sys.path:
    print(f"{root}/nvidia/cu13/lib")
PY
)
  for dir in $candidates /usr/local/cuda/lib64 /usr/local/cuda-13.0/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    if [ -e "$dir/libcublas.so.13" ] && [ -e "$dir/libcurand.so.10" ]; then cuda_libs="$dir"; break; fi
  done
fi
if [ -z "$cuda_libs" ]; then
  echo "[gpu-kit] no CUDA 13 libraries found (libcublas.so.13 and libcurand.so.10): install the wheels" \
       "nvidia-cublas nvidia-curand nvidia-cuda-runtime (CUDA 13), or set KIT_CUDA_LIBS=DIR" >&2
  exit 2
fi
# cudart may sit in its own wheel folder beside cuBLAS's; look next to it too.
extra=""
for dir in "$cuda_libs" "$cuda_libs/../../cuda_runtime/lib"; do
  [ -e "$dir/libcudart.so.13" ] && extra="$dir"
done
echo "[gpu-kit] CUDA libraries: $cuda_libs"
export LD_LIBRARY_PATH="$kit/lib:$cuda_libs${extra:+:$extra}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONPATH="$kit/py${PYTHONPATH:+:$PYTHONPATH}"
export GLOG_logtostderr=1 PYTHONUNBUFFERED=1
exec "$python" "$kit/check.py" "$@"

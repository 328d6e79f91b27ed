"""Writes the GPU kit (workflow.gpu_kit): the CUDA build, nets, data and one script, for a
bare machine with an NVIDIA GPU.

    python tools/gpu_kit.py [--out gpu-kit]      # then, there: bash gpu-kit/run.sh --out DIR
Needs the CUDA build first (`make cuda-build`; `make gpu-kit` does both).
"""
import argparse
import sys

from workflow.gpu_kit import DEFAULT_OUT, KitError, build_kit


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="kit folder to write (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="processes for the data build (default: 2)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        summary = build_kit(args.out, args.workers)
    except KitError as exc:
        sys.exit(f"gpu_kit: {exc}")
    print(f"gpu_kit: wrote {args.out} ({summary['bytes'] / 2**20:.1f} MiB: {len(summary['libraries'])} libraries, "
          f"{summary['samples']['train']} training samples); run `bash {args.out}/run.sh --out DIR` on a GPU machine")


if __name__ == "__main__":
    main()

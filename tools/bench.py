"""CPU training benchmark: stock Caffe against ours, side by side in one run (landmarks.train.bench).

    python tools/bench.py [--json FILE] [--repeats N]
Prints the training-step times of the level-1 train net at batch 128 (stock layers against
ours), their ratio, per layer type times, and our ConvolutionDepthwise against the grouped
Convolution at every depthwise shape of the level-1 net, with each target met or NOT met.
It is a benchmark, not a test: the equivalence of the two sides is what `make test` checks.
"""
import argparse
import os

os.environ.setdefault("GLOG_minloglevel", "2")  # before pycaffe loads: no glog chatter

from landmarks.common import atomic  # noqa: E402  (sets OMP_WAIT_POLICY before pycaffe loads)
from landmarks.train import bench as train_bench


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--repeats", type=int, default=7, help="timed training steps per side (default: 7)")
    parser.add_argument("--dw-iterations", type=int, default=100,
                        help="caffe time iterations per depthwise shape and side at batch 1; a tenth at "
                             "batch 128 (default: 100)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    result = train_bench.run(args.repeats, args.dw_iterations, progress=lambda msg: print(f"[bench] {msg}", flush=True))
    print(train_bench.format_report(result))
    if args.json:
        atomic.write_json(args.json, result)


if __name__ == "__main__":
    main()

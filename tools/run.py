"""Run the cascade's stages: level1, crops, level2, demo (all three on synthetic data), data,
report. Outputs go to runs/<--run>/; `make level1` etc. call this.

  python tools/run.py level1 --run main                # train and evaluate level 1
  python tools/run.py crops --run main --thresh 0.05   # level-2 data from level 1's predictions
  python tools/run.py level2 --run main                # train level 2, evaluate the cascade
  python tools/run.py demo                             # everything, synthetic data, CPU schedule
"""
import argparse
import sys

from data_prep.readers import format_choice
from landmarks.common import checks
from landmarks.common.lock import RunFolderBusy, run_folder_lock
from landmarks.nets.mobilenet import DEPTHWISE_CHOICES, LOSS_CHOICES
from landmarks.nets.solvers import SCHEDULES
from landmarks.train.driver import TrainingError
from workflow import stages
from workflow.data import prepare_level1_data
from workflow.settings import Settings, WorkflowError, run_dir

STAGES = ("level1", "crops", "level2", "demo", "data", "report")


def parse_args(argv=None):
    d = Settings()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=STAGES)
    p.add_argument("--run", default=None, help="run name: outputs in runs/<run>/ (default: 'default'; 'demo' for demo)")
    p.add_argument("--dataset", "--celeba", dest="dataset", default=d.dataset,
                   help="dataset root: CelebA as distributed, MTFL (training.txt) or Sun et al.'s lists "
                        "(trainImageList.txt) (default: the built-in synthetic CelebA); --celeba is an alias")
    p.add_argument("--dataset-format", type=format_choice, default=d.dataset_format,
                   help="celeba | mtfl | sun (default auto: detected from the files present)")
    p.add_argument("--variant", choices=("wild", "align"), default=d.variant,
                   help="CelebA: in-the-wild or aligned images (default wild)")
    p.add_argument("--split", choices=("official", "random"), default=d.split,
                   help="official: CelebA's partition, or a list's test list (val and test carved 80/10/10 with "
                        "--seed where there is none); random: everything carved (CelebA: the article's 80/20) "
                        "(default official)")
    p.add_argument("--count", type=int, default=d.synthetic_count, help=f"synthetic images (default {d.synthetic_count})")
    p.add_argument("--seed", type=int, default=d.seed, help="seed for synthetic data, random split and shuffling")
    p.add_argument("--schedule", choices=["auto", *sorted(SCHEDULES)], default=d.schedule,
                   help="auto: article on a GPU, demo on a CPU (default auto)")
    p.add_argument("--gpu", default=d.gpu, help="auto (GPU 0 if any), '' for CPU, 0, 0,1 or all (default auto)")
    p.add_argument("--depthwise", choices=DEPTHWISE_CHOICES, default=d.depthwise, help="default layer")
    p.add_argument("--format", choices=("hdf5", "lmdb"), default=d.format, help="training data format (default hdf5)")
    p.add_argument("--thresh", type=float, default=d.thresh,
                   help="crops: drop training images whose level-1 error exceeds this (default 0.05)")
    p.add_argument("--input-size", type=int, default=d.input_size, help="network input side (default 48)")
    p.add_argument("--limit", type=int, default=0, help="use only the first N images (quick runs)")
    p.add_argument("--augment", type=int, default=d.augment, metavar="COPIES",
                   help="transformed copies per training image, both levels (default: the schedule's)")
    p.add_argument("--train-crops", choices=("auto", "prediction", "truth"), default=d.train_crops,
                   help="level 2's training crops: around level 1's prediction or the truth (default: the schedule's)")
    p.add_argument("--iterations", type=int, default=d.iterations, metavar="N",
                   help="train each level N iterations, lr steps scaled along (default 0: the schedule's)")
    p.add_argument("--loss", choices=("auto", *LOSS_CHOICES), default=d.loss,
                   help="euclidean (the article) or wing (default: the schedule's)")
    p.add_argument("--resume", action="store_true", help="continue training from the newest whole .solverstate")
    p.add_argument("--rebuild", action="store_true",
                   help="rebuild the data even when its manifest.json says it is current (make REBUILD=1)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    run = args.run or ("demo" if args.stage == "demo" else "default")
    schedule = "demo" if args.stage == "demo" and args.schedule == "auto" else args.schedule
    settings = Settings(run=run, dataset=args.dataset, dataset_format=args.dataset_format,
                                 variant=args.variant, split=args.split,
                                 synthetic_count=args.count, seed=args.seed, schedule=schedule, gpu=args.gpu,
                                 depthwise=args.depthwise, format=args.format, thresh=args.thresh,
                                 input_size=args.input_size, limit=args.limit, resume=args.resume,
                                 augment=args.augment, train_crops=args.train_crops, loss=args.loss,
                                 iterations=args.iterations, rebuild=args.rebuild)
    problem = checks.run_name_problem(run)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.stage == "report" and not (run_dir(settings) / "settings.json").exists():
        print(f"error: {run_dir(settings)} holds no run (no settings.json): check RUN", file=sys.stderr)
        return 2
    try:
        if args.stage != "report":
            settings.resolved()  # options are checked before anything is made or locked
    except WorkflowError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        if args.stage == "data":  # shared data, no run folder: data prep's own build is atomic
            return _run_stage(args, settings)
        with run_folder_lock(run_dir(settings)):
            return _run_stage(args, settings)
    except RunFolderBusy as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if not checks.is_disk_error(err):
            raise
        where = err.filename or f"{run_dir(settings)} or {settings.data_root}"
        print(f"error: {checks.disk_message(err, where)}", file=sys.stderr)
        return 2


def _run_stage(args, settings):
    try:
        if args.stage == "data":
            root, data_dir = prepare_level1_data(settings.resolved())
            print(f"level-1 data: {data_dir}")
        elif args.stage == "report":
            from workflow.report import write_report

            print(write_report(run_dir(settings)))
        else:
            getattr(stages, args.stage)(settings)
    except (WorkflowError, TrainingError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        print(f"\n{stop}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Owns which Caffe files a level needs and where they go: train/test net, deploy net, solver.

Used for the canonical files committed in prototxt/ and solvers/ (paths relative to the
repository root, the article's schedule, GPU mode as in the article) and for the files each
training run writes into its own folder (absolute paths, the run's schedule and machine).
"""
from pathlib import Path

from landmarks.common.protoio import prototxt_text, write_prototxt
from landmarks.nets import mobilenet as nets
from landmarks.nets import solvers

LEVELS = (1, 2)


def level_nets(level, cfg, source, data_dir, schedule):
    """(train_test NetParameter, deploy NetParameter) for one level."""
    name = f"level{level}"
    train_test = nets.train_test_net(
        cfg, source, nets.data_sources(source, data_dir, "train"), nets.data_sources(source, data_dir, "test"),
        schedule.batch_train, schedule.batch_test, name)
    return train_test, nets.deploy_net(cfg, name)


def canonical_files(root="."):
    """{relative path: text} of every committed generated file (the article's settings)."""
    schedule = solvers.get_schedule("article")
    files = {}
    for level in LEVELS:
        for depthwise in nets.DEPTHWISE_CHOICES:
            cfg = nets.NetConfig(depthwise=depthwise)
            suffix = "" if depthwise == "layer" else "_group"
            train_test, deploy = level_nets(level, cfg, "hdf5", f"data/level{level}", schedule)
            files[f"prototxt/level{level}_train_test{suffix}.prototxt"] = prototxt_text(train_test)
            files[f"prototxt/level{level}_deploy{suffix}.prototxt"] = prototxt_text(deploy)
        solver = solvers.solver(schedule, level, f"prototxt/level{level}_train_test.prototxt",
                                f"runs/article/level{level}/snapshots/level{level}", mode="GPU")
        files[f"solvers/level{level}_solver.prototxt"] = prototxt_text(solver)
    return {str(Path(root) / path): text for path, text in files.items()}


def write_canonical(root="."):
    written = []
    for path, text in canonical_files(root).items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(f"{path}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
        written.append(path)
    return written


def write_level_files(out_dir, level, cfg, source, data_dir, schedule, mode=None, test_iter=None,
                      max_iter=None):
    """Writes a run's train_test.prototxt, deploy.prototxt and solver.prototxt into out_dir
    (absolute paths inside, snapshots under out_dir/snapshots); returns their paths."""
    out_dir = Path(out_dir).resolve()
    train_test, deploy = level_nets(level, cfg, source, str(Path(data_dir).resolve()), schedule)
    paths = {"train_test": out_dir / "train_test.prototxt", "deploy": out_dir / "deploy.prototxt",
             "solver": out_dir / "solver.prototxt"}
    write_prototxt(train_test, paths["train_test"])
    write_prototxt(deploy, paths["deploy"])
    solver = solvers.solver(schedule, level, paths["train_test"], out_dir / "snapshots" / f"level{level}",
                            mode=mode, test_iter=test_iter, max_iter=max_iter)
    (out_dir / "snapshots").mkdir(parents=True, exist_ok=True)
    write_prototxt(solver, paths["solver"])
    return paths

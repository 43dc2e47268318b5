"""Search economy: a full grid over alpha vs TPE + pruning with the same trial budget, on the offline digits.

Both searches run ``helu_lightning.search`` on configs/offline.yaml (small CNN, seed 0 for every trial, so a
trial's result depends on alpha alone). The grid trains each of 8 alphas for all epochs. TPE chooses among the same
8 values (a categorical, so "the same best alpha" is an exact comparison; a repeated value reuses its finished
trial) and successive halving stops a trial outside the top third (with few trials: not the best so far) after
epoch 2, then after epoch 4. The metric is val/loss (minimised): unlike accuracy on 270 images it has no ties.
Prints every trial's val/loss curve, then the epochs each search used and the best alpha each found.

    python benchmarks/search_economy.py                     # 1-4 minutes on 2 CPU cores
    python benchmarks/search_economy.py --warmup_epochs 4   # first cut after epoch 5: slower, late bloomers kept
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import optuna
import torch
import yaml

from helu_lightning.search import PRUNERS, build_parser, run

ROOT = Path(__file__).resolve().parents[1]
GRID = [0.001, 0.003, 0.01, 0.03, 0.05, 0.1, 0.3, 1.0]


def search(out: Path, name: str, opts: argparse.Namespace, pruner: str, enqueue_grid: bool) -> optuna.Study:
    """One study in out/<name>: the whole grid enqueued (grid search) or TPE choosing among the grid's values."""
    (out / name).mkdir(parents=True)
    space = out / name / "space.yaml"
    space.write_text(yaml.safe_dump({"alpha": {"type": "categorical", "choices": GRID}}))
    storage = f"sqlite:///{out / name / 'study.db'}"
    if enqueue_grid:
        study = optuna.create_study(study_name=name, storage=storage, direction="minimize")
        for alpha in GRID:
            study.enqueue_trial({"alpha": alpha})
    argv = [
        "--config", str(ROOT / "configs" / "offline.yaml"), "--space", str(space), "--study_name", name,
        "--storage", storage, "--output_dir", str(out / name), "--n_trials", str(len(GRID)),
        "--monitor", "val/loss", "--direction", "minimize", "--pruner", pruner,
        "--pruner_startup_trials", "1", "--pruner_warmup_epochs", str(opts.warmup_epochs),
        "--sampler_seed", "0", "--sampler_startup_trials", "3", "--no_calibration",
        f"--trainer.max_epochs={opts.epochs}", f"--model.init_args.lr_scheduler.init_args.T_max={opts.epochs}",
        "--trainer.enable_checkpointing=false", "--trainer.logger=false", "--trainer.callbacks=[]",
        "--test_after_fit=false",
    ]
    return run(build_parser().parse_args(argv))


def report(name: str, study: optuna.Study) -> tuple[int, float, float]:
    """Print each trial's val/loss after every epoch it trained; return (epochs used, best alpha, best val/loss)."""
    trials = study.get_trials(deepcopy=False)
    for t in trials:
        curve = " ".join(f"{v:.3f}" for v in t.intermediate_values.values())
        if "reused_from" in t.user_attrs:
            curve = f"(same alpha as trial {t.user_attrs['reused_from']}: not trained again)"
        print(f"{name:<11} trial {t.number}  alpha {t.params['alpha']:<6g} {t.state.name:<8} "
              f"epochs {t.user_attrs['epochs']}  val/loss by epoch: {curve}")
    return sum(t.user_attrs["epochs"] for t in trials), study.best_params["alpha"], study.best_value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=9, help="epochs of a full trial")
    parser.add_argument("--pruner", choices=PRUNERS, default="successive_halving")
    parser.add_argument("--warmup_epochs", type=int, default=0, help="epochs before the pruner may stop a trial")
    parser.add_argument("--threads", type=int, default=1)
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory(prefix="search-economy-") as tmp:
        for name, pruner, enqueue in (("grid", "none", True), ("tpe+pruning", opts.pruner, False)):
            start = time.perf_counter()
            study = search(Path(tmp), name, opts, pruner, enqueue)
            rows.append((name, time.perf_counter() - start, study))
        print()
        results = [(name, seconds, *report(name, study)) for name, seconds, study in rows]
    print()
    print(f"{'search':<12}  trials  epochs  seconds  best alpha  best val/loss")
    for name, seconds, epochs, alpha, loss in results:
        print(f"{name:<12}  {len(GRID):>6}  {epochs:>6}  {seconds:>7.1f}  {alpha:>10g}  {loss:>13.4f}")
    (_, _, grid_epochs, grid_alpha, _), (_, _, tpe_epochs, tpe_alpha, _) = results
    same = "yes" if tpe_alpha == grid_alpha else "no"
    print(f"compute ratio (epochs tpe+pruning / grid): {tpe_epochs / grid_epochs:.2f}x; same best alpha: {same}")


if __name__ == "__main__":
    main()

"""Search economy: a full grid over alpha vs TPE + successive-halving pruning with the same trial budget.

Both searches run ``helu_lightning.search`` on configs/offline.yaml (digits, small CNN, seeded), one trial per
alpha value, every trial with the same seed, so a trial's result depends on alpha alone. The grid trains every
alpha for all epochs; TPE picks alphas from the same grid values (categorical, so "the same best alpha" is an
exact comparison) and the pruner stops trials that trail at 1, 3, 9 epochs. The metric is val/loss (minimised):
unlike accuracy on 270 images it has no ties. Prints each trial, then the epochs used and the best of each.

    python benchmarks/search_economy.py                      # ~10 minutes on 2 CPU cores
    python benchmarks/search_economy.py --epochs 6 --trials 6
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import optuna
import torch
import yaml

from helu_lightning.search import build_parser, run_search

ROOT = Path(__file__).resolve().parents[1]
GRID = [0.001, 0.003, 0.01, 0.03, 0.05, 0.1, 0.3, 1.0]


def search(out: Path, name: str, pruner: str, epochs: int, trials: int, grid: list[float], enqueue: bool) -> optuna.Study:
    """One study in out/<name>: enqueue the whole grid (grid search) or let TPE choose among the grid's values."""
    space = out / f"{name}_space.yaml"
    space.write_text(yaml.safe_dump({"alpha": {"type": "categorical", "choices": grid}}))
    storage = f"sqlite:///{out / name / 'study.db'}"
    (out / name).mkdir(parents=True)
    if enqueue:
        study = optuna.create_study(study_name=name, storage=storage, direction="minimize")
        for alpha in grid:
            study.enqueue_trial({"alpha": alpha})
    argv = [
        "--config", str(ROOT / "configs" / "offline.yaml"), "--space", str(space), "--study_name", name,
        "--storage", storage, "--output_dir", str(out / name), "--n_trials", str(trials),
        "--monitor", "val/loss", "--direction", "minimize", "--pruner", pruner,
        "--sampler_seed", "0", "--sampler_startup_trials", "3",
        f"--trainer.max_epochs={epochs}", f"--model.init_args.lr_scheduler.init_args.T_max={epochs}",
        "--trainer.enable_checkpointing=false", "--trainer.logger=false", "--trainer.callbacks=[]",
        "--test_after_fit=false", "--no_calibration",
    ]
    args, overrides = build_parser().parse_known_args(argv)
    return run_search(args, overrides)


def report(name: str, study: optuna.Study) -> tuple[int, float, float]:
    """Print each trial's val/loss after every epoch it trained; return (epochs used, best alpha, best val/loss)."""
    trials = study.get_trials(deepcopy=False)
    for t in trials:
        curve = " ".join(f"{v:.3f}" for v in t.intermediate_values.values())
        reused = f"(same alpha as trial {t.user_attrs['reused_from']}, not refit)" if "reused_from" in t.user_attrs else ""
        print(f"{name:<11} trial {t.number}  alpha {t.params['alpha']:<6g} {t.state.name:<8} epochs {t.user_attrs['epochs']}  "
              f"val/loss by epoch: {curve or reused}")
    return sum(t.user_attrs["epochs"] for t in trials), study.best_params["alpha"], study.best_value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=9, help="epochs of a full trial")
    parser.add_argument("--trials", type=int, default=len(GRID), help="trial budget of each search")
    parser.add_argument("--threads", type=int, default=1)
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    grid = GRID[: opts.trials] if opts.trials < len(GRID) else GRID
    with tempfile.TemporaryDirectory(prefix="search-economy-") as tmp:
        out = Path(tmp)
        start = time.perf_counter()
        grid_study = search(out, "grid", "none", opts.epochs, len(grid), grid, enqueue=True)
        grid_seconds = time.perf_counter() - start
        start = time.perf_counter()
        tpe_study = search(out, "tpe", "successive_halving", opts.epochs, len(grid), grid, enqueue=False)
        tpe_seconds = time.perf_counter() - start
        grid_epochs, grid_alpha, grid_loss = report("grid", grid_study)
        tpe_epochs, tpe_alpha, tpe_loss = report("tpe+pruning", tpe_study)
    print()
    print(f"search        trials  epochs  seconds  best alpha  best val/loss")
    print(f"grid          {len(grid):>6}  {grid_epochs:>6}  {grid_seconds:>7.1f}  {grid_alpha:>10g}  {grid_loss:>13.4f}")
    print(f"tpe+pruning   {len(grid):>6}  {tpe_epochs:>6}  {tpe_seconds:>7.1f}  {tpe_alpha:>10g}  {tpe_loss:>13.4f}")
    print(f"compute ratio (epochs tpe+pruning / grid): {tpe_epochs / grid_epochs:.2f}x; "
          f"same best alpha: {'yes' if tpe_alpha == grid_alpha else 'no'}")


if __name__ == "__main__":
    main()

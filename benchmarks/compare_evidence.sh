#!/usr/bin/env bash
# The comparisons behind the README's "Results" section, exactly as run (one thread each, 2 shared cores).
# Each writes results.md, runs.csv, report.json and plots/ under runs/compare/<name>/; re-running resumes.
#   bash benchmarks/compare_evidence.sh                 # every study, one after another
#   bash benchmarks/compare_evidence.sh depth_digits    # only the named ones (names below)
#   bash benchmarks/compare_evidence.sh depth_tables    # the README's depth-sweep tables, from finished studies
#   RESULTS=docs/results bash benchmarks/compare_evidence.sh depth_tables   # ... from the committed reports
set -euo pipefail
export OMP_NUM_THREADS=1
LEAKY='{name: leaky_relu, negative_slope: 0.01}'
PLAIN_ARMS=(relu helu:0.01 helu:0.05 helu:0.2 gelu "$LEAKY")

# 1. Fashion-MNIST (real, Debian dataset-fashion-mnist), CIFAR-style ResNet-18 width 8, 3 activations x 5 seeds, at
#    a budget where ReLU's validation curve has flattened: 8 epochs of 100 random batches of 128 (12,800 images an
#    epoch, 102,400 in all: 1.9 passes over the 54k training split), AdamW lr 2e-3 with cosine decay over the 8
#    epochs; validation on 8 batches (1,024 held-out training images), test on all 10k test images, INT8 on 4
#    validation batches (512 images). ReLU's validation accuracy by epoch (seed 0): 78.7, 73.5, 83.1, 84.4, 84.7,
#    87.8, 89.1, 89.3%.
fashion_mnist() {
    helu-train compare --config configs/fashion_mnist.yaml \
        --activations relu gelu helu:0.05 --seeds 5 \
        --output_dir runs/compare/fashion_mnist --int8_batches 4 --trainer.max_epochs 8 \
        --trainer.limit_train_batches 100 --trainer.limit_test_batches 1.0 \
        --model.init_args.lr_scheduler.init_args.T_max 8
}

# 2. Where ReLU units die: digits, small CNN without dropout, SGD at lr 0.5 (10x the config's), 5 epochs.
digits_high_lr() {
    helu-train compare --config configs/offline.yaml --activations relu helu:0.05 --seeds 5 \
        --output_dir runs/compare/digits_high_lr --no_int8 --trainer.max_epochs 5 \
        --model.init_args.optimizer.init_args.lr 0.5 --model.init_args.lr_scheduler.init_args.T_max 5 \
        --model.init_args.backbone_options.dropout 0
}

# 3. MiniLM (real all-MiniLM-L6-v2) fine-tuned on BBC news, FFN activation swapped, 3 activations x 5 seeds.
#    Subsampled: 160 training articles, 64 tokens, 2 epochs; test on 4 batches of 64 (256 of the 445 test
#    articles); INT8 scored on 2 validation batches (128 articles).
text_bbc() {
    helu-train compare --config configs/text_offline.yaml --activations relu gelu helu:0.05 --seeds 5 \
        --output_dir runs/compare/text_bbc --int8_batches 2 --data.init_args.max_train_samples 160 \
        --trainer.limit_test_batches 4
}

# 4. Depth sweep without normalisation: digits through a plain MLP (width 32, PyTorch's default init), SGD lr
#    0.02 momentum 0.9, 30 epochs of 20 steps, at depths 4, 8 and 12; then depth 8 with BatchNorm. 6 activations
#    x 5 seeds each; INT8 scored on 2 validation batches (128 digits).
# depth_sweep CONFIG NAME DEPTH...: the plain-MLP arms at each depth without normalisation, then depth 8 + BatchNorm.
depth_sweep() {
    local config=$1 name=$2
    shift 2
    for depth in "$@"; do
        helu-train compare --config "$config" --activations "${PLAIN_ARMS[@]}" --seeds 5 \
            --output_dir "runs/compare/${name}_d${depth}" --int8_batches 2 \
            --model.init_args.backbone_options.depth "$depth"
    done
    helu-train compare --config "$config" --activations "${PLAIN_ARMS[@]}" --seeds 5 \
        --output_dir "runs/compare/${name}_d8_batchnorm" --int8_batches 2 \
        --model.init_args.backbone_options.depth 8 --model.init_args.backbone_options.norm batch
}
depth_digits() {
    depth_sweep configs/plain_mlp_digits.yaml depth_digits 4 8 12
}

# 5. GELU -> ReLU conversion of the pretrained MiniLM on BBC news, at a budget where the GELU model has converged:
#    400 training articles, 64 tokens, 5 epochs (GELU's validation accuracy by epoch: 88.8, 95.1, 95.1, 96.4,
#    96.0%), validation on all ~222 validation articles, test on all 445 test articles, INT8 on 2 validation
#    batches (128 articles). The teacher is that GELU model (seed 0); the students start from the pretrained (not
#    fine-tuned) MiniLM with their FFN activation swapped. Two workers per study (the same command twice).
TEXT_BUDGET=(--trainer.max_epochs 5 --int8_batches 2)
SCHEDULE='{name: helu, alpha: 1, schedule: {name: cosine, start: 1, end: 0.05}}'
text_teacher() {
    [ -f runs/text_teacher_400/checkpoints/best.ckpt ] || helu-train fit --config configs/text_offline.yaml \
        --model.init_args.activation null --trainer.max_epochs 5 \
        --trainer.default_root_dir runs/text_teacher_400 --trainer.enable_progress_bar false
}
text_relufication() {
    helu-train compare --config configs/text_offline.yaml --activations relu helu:0.05 helu:0.2 "$SCHEDULE" gelu \
        --seeds 5 --output_dir runs/compare/relufication "${TEXT_BUDGET[@]}"
}
text_relufication_distill() {
    text_teacher
    helu-train compare --config configs/text_offline.yaml --activations relu helu:0.05 helu:0.2 "$SCHEDULE" \
        --seeds 5 --output_dir runs/compare/relufication_distill "${TEXT_BUDGET[@]}" \
        --model.init_args.distill '{teacher: runs/text_teacher_400/checkpoints/best.ckpt, temperature: 2, weight: 0.5}'
}

# 6. The depth sweep on Fashion-MNIST (real, Debian dataset-fashion-mnist): plain MLP width 64, SGD lr 0.02
#    momentum 0.9, 5 epochs of 60 random batches of 128, validation on 1,280 and test on 2,560 images, INT8 on 2
#    validation batches. Depth 8 first (the depth where digits separate the activations), then 4, 12, 8 + BN.
depth_fashion_mnist() {
    depth_sweep configs/plain_mlp_fashion_mnist.yaml depth_fashion_mnist 8 4 12
}

# 7. The depth sweep's control for the signal scale: Fashion-MNIST at depths 8 and 12 as in 6, but with He's
#    initialisation (std sqrt(2 / fan_in), zero bias), which keeps the pre-activations from shrinking layer by layer.
depth_fashion_mnist_he() {
    for depth in 8 12; do
        helu-train compare --config configs/plain_mlp_fashion_mnist.yaml --activations "${PLAIN_ARMS[@]}" --seeds 5 \
            --output_dir "runs/compare/depth_fashion_mnist_he_d${depth}" --int8_batches 2 \
            --model.init_args.backbone_options.depth "$depth" --model.init_args.backbone_options.init kaiming
    done
}

# 8. The budget check of the Fashion-MNIST depth sweep: depth 8, default initialisation, 20 epochs instead of 5
#    (does ReLU leave the plateau given 4x the steps?).
depth_fashion_mnist_long() {
    helu-train compare --config configs/plain_mlp_fashion_mnist.yaml --activations "${PLAIN_ARMS[@]}" --seeds 5 \
        --output_dir runs/compare/depth_fashion_mnist_d8_20epochs --int8_batches 2 \
        --model.init_args.backbone_options.depth 8 --trainer.max_epochs 20
}

# 9. Choosing alpha (issue 30) where it matters: the depth-8 plain MLP on digits of 4. The grid: ReLU and HeLU at 8
#    log-spaced alphas from 0.005 to 1, 5 seeds. The choosers: helu:auto (suggest_alpha per seed, at the start of
#    training) with a cosine alpha schedule from 1 to 0.05 beside it, over the same seeds; and helu-train search with
#    its shipped defaults (alpha log-uniform in [1e-4, 1], TPE, median pruner) at the grid's per-run budget, 20 trials,
#    3 times (sampler and training seed 0, 1, 2). alpha_choice_digits writes the files alpha_choice.py reads
#    (per-run seconds of the grid, the calibration's alpha and cost per seed) and prints its tables and plot.
ALPHA_DIGITS=(--config configs/plain_mlp_digits.yaml)
ALPHA_DEPTH=(--model.init_args.backbone_options.depth 8)
alpha_grid_digits() {
    helu-train compare "${ALPHA_DIGITS[@]}" \
        --activations relu helu:0.005 helu:0.01 helu:0.02 helu:0.05 helu:0.1 helu:0.2 helu:0.5 helu:1.0 --seeds 5 \
        --output_dir runs/compare/alpha_grid_digits_d8 --no_int8 "${ALPHA_DEPTH[@]}"
}
alpha_auto_digits() {
    helu-train compare "${ALPHA_DIGITS[@]}" --activations helu:auto "$SCHEDULE" --baseline none --seeds 5 \
        --output_dir runs/compare/alpha_auto_digits_d8 --no_int8 "${ALPHA_DEPTH[@]}"
}
alpha_search_digits() {
    local seed
    for seed in 0 1 2; do
        helu-train search "${ALPHA_DIGITS[@]}" --n_trials 20 --output_dir "runs/search/alpha_search_digits_d8_s${seed}" \
            --sampler_seed "$seed" --seed_everything "$seed" "${ALPHA_DEPTH[@]}"
    done
}
# The same with a space that spans the grid (alpha log-uniform in [0.005, 1]), no pruning (here pruned trials ran
# 18-29 of the 30 epochs, saving little) and TPE from the 6th trial: 15 trials, a third of the grid's epochs.
alpha_span_search_digits() {
    local seed
    for seed in 0 1 2; do
        helu-train search "${ALPHA_DIGITS[@]}" --space configs/search/alpha_span.yaml --pruner none \
            --sampler_startup_trials 5 --n_trials 15 --output_dir "runs/search/alpha_span_search_digits_d8_s${seed}" \
            --sampler_seed "$seed" --seed_everything "$seed" "${ALPHA_DEPTH[@]}"
    done
}
# The searches' picks trained on the grid's seeds: their regret measured (the second study: the span search's last
# pick, and 0.2003, a hair from the grid's 0.2).
alpha_picks_digits() {
    helu-train compare "${ALPHA_DIGITS[@]}" --activations helu:0.2235 helu:0.2359 helu:0.2515 helu:0.3041 \
        --baseline none --seeds 5 --output_dir runs/compare/alpha_picks_digits_d8 --no_int8 "${ALPHA_DEPTH[@]}"
    helu-train compare "${ALPHA_DIGITS[@]}" --activations helu:0.2003 helu:0.2178 \
        --baseline none --seeds 5 --output_dir runs/compare/alpha_picks2_digits_d8 --no_int8 "${ALPHA_DEPTH[@]}"
}
# The tables and plot of 9 from the finished studies, after writing there the per-run seconds and the calibration that
# compare and search do not write (RESULTS=docs/results: from the committed files).
alpha_choice_digits() {
    local grid=runs/compare/alpha_grid_digits_d8 auto=runs/compare/alpha_auto_digits_d8
    local picks=(runs/compare/alpha_picks_digits_d8 runs/compare/alpha_picks2_digits_d8)
    local searches=(runs/search/alpha_search_digits_d8_s* runs/search/alpha_span_search_digits_d8_s*)
    if [ -n "${RESULTS:-}" ]; then
        grid=$RESULTS/alpha_grid_digits_d8 auto=$RESULTS/alpha_auto_digits_d8
        picks=("$RESULTS"/alpha_picks_digits_d8 "$RESULTS"/alpha_picks2_digits_d8)
        searches=("$RESULTS"/alpha_search_digits_d8_s* "$RESULTS"/alpha_span_search_digits_d8_s*)
    else
        python benchmarks/alpha_choice.py seconds "$grid" > "$grid/run_seconds.csv"
        [ -f "$auto/calibration.csv" ] || python benchmarks/alpha_choice.py calibrate "${ALPHA_DIGITS[@]}" --seeds 5 \
            --targets 0.25 0.5 0.75 0.9 "${ALPHA_DEPTH[@]}" > "$auto/calibration.csv"
    fi
    python benchmarks/alpha_choice.py table --grid "$grid" --auto "$auto" --search "${searches[@]}" \
        --measured "${picks[@]}" --plot "$grid/alpha_choice.png"
}

# The README's depth-sweep tables (accuracy, paired difference to ReLU, dead units), from the finished studies above
# (RESULTS=docs/results: from the reports committed with the README).
depth_tables() {
    local r=${RESULTS:-runs/compare}
    python benchmarks/sweep_table.py "digits, depth 4=$r/depth_digits_d4" "digits, depth 8=$r/depth_digits_d8" \
        "digits, depth 12=$r/depth_digits_d12" "digits, depth 8, BatchNorm=$r/depth_digits_d8_batchnorm" \
        "Fashion-MNIST, depth 4=$r/depth_fashion_mnist_d4" "Fashion-MNIST, depth 8=$r/depth_fashion_mnist_d8" \
        "Fashion-MNIST, depth 12=$r/depth_fashion_mnist_d12" \
        "Fashion-MNIST, depth 8, 20 epochs=$r/depth_fashion_mnist_d8_20epochs" \
        "Fashion-MNIST, depth 8, BatchNorm=$r/depth_fashion_mnist_d8_batchnorm" \
        "Fashion-MNIST, depth 8, He init=$r/depth_fashion_mnist_he_d8" \
        "Fashion-MNIST, depth 12, He init=$r/depth_fashion_mnist_he_d12"
}

STUDIES=(fashion_mnist digits_high_lr text_bbc depth_digits text_relufication text_relufication_distill
         depth_fashion_mnist depth_fashion_mnist_he depth_fashion_mnist_long alpha_grid_digits alpha_auto_digits
         alpha_search_digits alpha_span_search_digits alpha_picks_digits)
KNOWN=("${STUDIES[@]}" text_teacher depth_tables alpha_choice_digits)
studies=("$@")
[ ${#studies[@]} -eq 0 ] && studies=("${STUDIES[@]}")
is_known() {
    local name
    for name in "${KNOWN[@]}"; do [ "$name" = "$1" ] && return 0; done
    return 1
}
for study in "${studies[@]}"; do  # every name checked before hours of work, and helpers such as depth_sweep refused
    is_known "$study" || { echo "unknown study '$study'; known: ${KNOWN[*]}" >&2; exit 2; }
done
for study in "${studies[@]}"; do
    "$study"
done

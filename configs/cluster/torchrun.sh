#!/usr/bin/env bash
# Multi-node fit without SLURM: run this same command on every node; torchrun starts one process per GPU and
# Lightning's TorchElasticEnvironment takes the ranks from torchrun.
#
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 GPUS_PER_NODE=4 configs/cluster/torchrun.sh configs/cifar100.yaml
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=node0 GPUS_PER_NODE=4 configs/cluster/torchrun.sh configs/cifar100.yaml
#
# If a worker dies, torchrun restarts all of them (up to MAX_RESTARTS) and `--ckpt_path last` resumes the fit
# from the newest last/on-exception checkpoint (needs a ModelCheckpoint with save_last and a fixed dirpath).
set -euo pipefail

config=${1:?usage: configs/cluster/torchrun.sh CONFIG.yaml [helu-train fit arguments]}
shift
: "${NNODES:=1}" "${NODE_RANK:=0}" "${MASTER_ADDR:=127.0.0.1}" "${MASTER_PORT:=29500}" "${GPUS_PER_NODE:=1}"
: "${MAX_RESTARTS:=3}" "${ACCELERATOR:=gpu}"

torchrun \
    --nnodes "$NNODES" \
    --node-rank "$NODE_RANK" \
    --nproc-per-node "$GPUS_PER_NODE" \
    --master-addr "$MASTER_ADDR" \
    --master-port "$MASTER_PORT" \
    --max-restarts "$MAX_RESTARTS" \
    -m helu_lightning fit --config "$config" \
    --trainer.accelerator "$ACCELERATOR" \
    --trainer.strategy ddp \
    --trainer.num_nodes "$NNODES" \
    --trainer.devices "$GPUS_PER_NODE" \
    --ckpt_path last \
    "$@"

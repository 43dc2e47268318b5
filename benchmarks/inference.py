"""CPU inference speed of a HeLU model after export (plain ReLU) against a ReLU-built twin, the GELU twin and the
un-exported HeLU model, in torch eager and onnxruntime, for a BERT-width text classifier and a CIFAR ResNet-18.

    python benchmarks/inference.py                          # about 5 minutes on 2 cores
    python benchmarks/inference.py --threads 2 --layers 12  # all of BERT-base, both cores (slower)

All variants share one set of weights. Each round times every variant once, in an order rotated per round, so
load from other processes hits all of them alike; the table gives the median time over rounds and, as ratios,
the median over rounds of each variant's time over the ReLU (GELU) twin's time in the same round.
Goals: exported / relu = 1.00x, exported / gelu < 0.90x on the text model.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from helu_lightning import activation_factory
from helu_lightning.export import onnx_feeds, to_relu, write_onnx
from helu_lightning.models import resnet18_cifar
from helu_lightning.models.text import build_sequence_classifier

ACTIVATIONS = {"helu": {"name": "helu", "alpha": 0.05}, "relu": "relu", "gelu": "gelu"}


def bert_models(layers: int) -> dict[str, nn.Module]:
    """BERT-base width (hidden 768, FFN 3072, 12 heads, vocab 30522) with ``layers`` encoder layers."""
    config = {"model_type": "bert", "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
              "num_hidden_layers": layers, "vocab_size": 30522}
    return _twins(lambda act: build_sequence_classifier(2, activation_factory(act), model_config=config))


def cnn_models() -> dict[str, nn.Module]:
    """CIFAR ResNet-18 (3x3 stem, 10 classes)."""
    return _twins(lambda act: resnet18_cifar(10, activation_factory(act)))


def _twins(build: Callable[[object], nn.Module]) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    helu = build(ACTIVATIONS["helu"]).eval()
    exported, _ = to_relu(helu)
    models = {"exported": exported, "helu": helu}
    for name in ("relu", "gelu"):
        models[name] = build(ACTIVATIONS[name]).eval()
        models[name].load_state_dict(exported.state_dict(), strict=True)
    return models


def _call(model: nn.Module, inputs: torch.Tensor | dict[str, torch.Tensor]) -> Callable[[], object]:
    def run() -> object:
        with torch.inference_mode():
            return model(**inputs) if isinstance(inputs, dict) else model(inputs)
    return run


def _sessions(models: dict[str, nn.Module], example: torch.Tensor | dict[str, torch.Tensor], folder: Path,
              title: str) -> dict[str, object]:
    """Per variant: an onnxruntime session and its input names (exported the way ``helu-train export`` does, with
    a dynamic batch), or the reason it could not be exported."""
    import onnxruntime as ort

    sessions: dict[str, object] = {}
    for name, model in models.items():
        path = folder / f"{title}-{name}.onnx"
        try:
            names = write_onnx(model, example, path)
        except Exception as err:  # reported in the table instead of stopping the run
            sessions[name] = f"not exportable ({type(err).__name__})"
            continue
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        sessions[name] = (ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]), names)
    return sessions


def _same_graph(first: Path, second: Path) -> bool:
    """Whether two ONNX files hold the same nodes (ops, wiring, attributes) in the same order."""
    import onnx

    def nodes(path: Path) -> list[tuple]:
        graph = onnx.load(str(path), load_external_data=False).graph
        return [(n.op_type, list(n.input), list(n.output), str(n.attribute)) for n in graph.node]
    return nodes(first) == nodes(second)


def _run_session(session: object, names: list[str], inputs: torch.Tensor | dict[str, torch.Tensor]
                 ) -> Callable[[], object]:
    feeds = onnx_feeds(names, inputs)
    return lambda: session.run(None, feeds)


def measure(calls: dict[str, Callable[[], object]], rounds: int, seconds: float) -> dict[str, list[float]]:
    """Seconds per call of each variant, one call each per round in an order rotated every round, for at least
    ``rounds`` rounds and until ``seconds`` have passed (after one warm-up round)."""
    names = list(calls)
    for call in calls.values():
        call()
    times: dict[str, list[float]] = {n: [] for n in names}
    began = time.perf_counter()
    index = 0
    while index < rounds or time.perf_counter() - began < seconds:
        for name in names[index % len(names):] + names[: index % len(names)]:
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
        index += 1
    return times


def _paired(times: dict[str, list[float]], key: str, base: str) -> float:
    """Median over rounds of this variant's time over the base variant's time in the same round."""
    return statistics.median(t / b for t, b in zip(times[key], times[base]))


def bench(title: str, models: dict[str, nn.Module], make_inputs: Callable[[int], object], batches: list[int],
          rounds: int, seconds: float, folder: Path) -> dict[int, float]:
    """Print the table rows of one model; return the eager ReLU twin's median seconds per batch size."""
    rows, relu = [], {}
    sessions = _sessions(models, make_inputs(2), folder, title)
    same = _same_graph(folder / f"{title}-exported.onnx", folder / f"{title}-relu.onnx")
    print(f"{title}: ONNX graph of the exported model is node for node the ReLU-built one's: {same}", flush=True)
    for batch in batches:
        inputs = make_inputs(batch)
        eager = {f"eager/{name}": _call(model, inputs) for name, model in models.items()}
        runnable = {f"ort/{n}": _run_session(*s, inputs) for n, s in sessions.items() if isinstance(s, tuple)}
        times = measure({**eager, **runnable}, rounds, seconds)
        relu[batch] = statistics.median(times["eager/relu"])
        for runtime in ("eager", "ort"):
            for name in models:
                key = f"{runtime}/{name}"
                if key not in times:
                    rows.append(f"{title:<9} {batch:>5} {runtime:<6} {name:<9} {sessions[name]}")
                    continue
                median = statistics.median(times[key])
                rows.append(f"{title:<9} {batch:>5} {runtime:<6} {name:<9} {median * 1e3:>9.2f} "
                            f"{batch / median:>10.1f} {_paired(times, key, f'{runtime}/relu'):>8.2f}x "
                            f"{_paired(times, key, f'{runtime}/gelu'):>8.2f}x {len(times[key]):>6}")
        print("\n".join(rows[-2 * len(models):]), flush=True)
    return relu


def activation_share(batches: list[int], seq: int, layers: int, width: int, relu_model: dict[int, float],
                     rounds: int, seconds: float) -> None:
    """Time the FFN activation alone on BERT's (batch, seq, 3072) tensor: how much of the model's time it is."""
    for batch in batches:
        x = torch.randn(batch, seq, width)
        acts = {name: activation_factory(spec)() for name, spec in ACTIVATIONS.items()}
        times = measure({name: _call(act, x) for name, act in acts.items()}, rounds, seconds / 4)
        parts = [f"{name} {statistics.median(t) * 1e3:.2f} ms ({statistics.median(t) * layers / relu_model[batch]:.1%})"
                 for name, t in times.items()]
        print(f"bert FFN activation alone, batch {batch}, per layer (x{layers} layers as share of the eager ReLU "
              f"model): {', '.join(parts)}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=2,
                        help="BERT encoder layers (BERT-base has 12; every layer has the same FFN/attention mix)")
    parser.add_argument("--seq", type=int, default=128, help="text sequence length")
    parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    parser.add_argument("--rounds", type=int, default=5, help="least timed rounds per setting")
    parser.add_argument("--seconds", type=float, default=20.0, help="least timing seconds per setting")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch and onnxruntime threads (1: stable timings on a shared machine)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {os.cpu_count()} CPUs; "
          f"BERT-base width, {args.layers} layers, seq {args.seq}; CIFAR ResNet-18 32x32")
    print(f"{'model':<9} {'batch':>5} {'run':<6} {'variant':<9} {'median ms':>9} {'samples/s':>10} "
          f"{'vs relu':>9} {'vs gelu':>9} {'rounds':>6}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        text = bert_models(args.layers)
        vocab = text["relu"].config.vocab_size

        def text_inputs(batch: int) -> dict[str, torch.Tensor]:
            generator = torch.Generator().manual_seed(batch)
            return {"input_ids": torch.randint(0, vocab, (batch, args.seq), generator=generator),
                    "attention_mask": torch.ones(batch, args.seq, dtype=torch.long),
                    "token_type_ids": torch.zeros(batch, args.seq, dtype=torch.long)}

        relu_model = bench("bert", text, text_inputs, batches, args.rounds, args.seconds, Path(tmp))
        activation_share(batches, args.seq, args.layers, text["relu"].config.intermediate_size, relu_model,
                         args.rounds, args.seconds)
        del text
        bench("resnet18", cnn_models(), lambda b: torch.randn(b, 3, 32, 32), batches, args.rounds, args.seconds,
              Path(tmp))


if __name__ == "__main__":
    sys.exit(main())

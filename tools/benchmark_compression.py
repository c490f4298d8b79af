"""Compression figures on the bundled digits: float vs int8 PTQ vs int8 QAT vs pruned + QAT.

For each model (default: MobileNetV2 0.35, MobileNetV3Small, ShuffleNetV2 0.5) this
trains a classifier on the digits' training split (upscaled to --image-size) with a
fixed recipe (`lightnets train` from scratch: --epochs frozen-phase epochs then
--fine-tune-epochs), makes every variant of `keras_lightnets.pipelines.variants`, measures
each .tflite with LiteRT on the held-out split (accuracy, size, gzip size, zeros
in conv/dense kernels, latency), and checks the targets:

* QAT int8 top-1 within 1.0 point of the float Keras model; PTQ int8 within 2 points;
* 50% pruned + sparsity-preserving QAT int8 within 1.5 points, >= 50% zeros in the
  pruned kernels of the .tflite;
* int8 .tflite <= 0.30x the float .tflite (checked for per-channel and per-tensor
  weight scales); 75% pruned int8, gzip-compressed, <= 0.15x;
* int8 latency below float latency (LiteRT, XNNPACK, same threads); the table also
  lists the ops XNNPACK left to TFLite's own kernels.

Writes OUTPUT/compression.md (table + checks, labelled with the machine and date),
OUTPUT/compression.json and OUTPUT/compression.png.

    python tools/benchmark_compression.py --output bench-output
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys

from keras_lightnets.export.delegation import format_op_counts
from keras_lightnets.pipelines.variants import VARIANTS

DEFAULT_MODELS = ("mobilenet_v2_035", "mobilenet_v3_small_100", "shufflenet_v2_x0_5")


def machine_label(threads: int) -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}, "
            f"{datetime.date.today().isoformat()}, LiteRT/XNNPACK {threads} thread(s)")


def checks(results: dict, keras_accuracy: float) -> list[tuple[str, bool, str]]:
    """``(target, met, measured)`` for one model's variants."""
    r = {name: v for name, v in results.items()}
    points = {name: 100 * (keras_accuracy - v.accuracy) for name, v in r.items()}
    out = []
    if "int8_qat" in r:
        out.append(("QAT int8 within 1.0 pt of float Keras", points["int8_qat"] <= 1.0,
                    f"{points['int8_qat']:+.2f} pt"))
    if "int8_ptq" in r:
        out.append(("PTQ int8 within 2.0 pt", points["int8_ptq"] <= 2.0, f"{points['int8_ptq']:+.2f} pt"))
    if "int8_qat_pruned50" in r:
        p50 = r["int8_qat_pruned50"]
        out.append(("50% pruned + PQAT int8 within 1.5 pt", points["int8_qat_pruned50"] <= 1.5,
                    f"{points['int8_qat_pruned50']:+.2f} pt"))
        out.append((">= 50% zeros in pruned kernels of the .tflite", p50.kernel_sparsity >= 0.5,
                    f"{p50.kernel_sparsity:.6f}"))
    if "int8_ptq_per_tensor" in r:
        out.append(("PTQ int8, per-tensor weights, within 2.0 pt", points["int8_ptq_per_tensor"] <= 2.0,
                    f"{points['int8_ptq_per_tensor']:+.2f} pt"))
    for name, scales in (("int8_ptq", "per-channel"), ("int8_ptq_per_tensor", "per-tensor")):
        if "float" in r and name in r:
            ratio = r[name].size_bytes / r["float"].size_bytes
            out.append((f"int8 size <= 0.30x float ({scales} weights)", ratio <= 0.30, f"{ratio:.3f}x"))
    if "float" in r and "int8_ptq" in r and r["float"].latency_ms and r["int8_ptq"].latency_ms:
        out.append(("int8 latency < float latency", r["int8_ptq"].latency_ms < r["float"].latency_ms,
                    f"{r['int8_ptq'].latency_ms:.3f} vs {r['float'].latency_ms:.3f} ms"))
    if "float" in r and "int8_qat_pruned75" in r:
        ratio = r["int8_qat_pruned75"].gzip_bytes / r["float"].size_bytes
        out.append(("75% pruned int8 gzip <= 0.15x float", ratio <= 0.15, f"{ratio:.3f}x"))
    return out


def markdown(all_results: dict, label: str, args) -> str:
    lines = [f"# Compression on the bundled digits ({args.image_size}x{args.image_size} px)", "",
             f"Machine: {label}.", "",
             f"Recipe: from scratch, {args.epochs}+{args.fine_tune_epochs} epochs (`lightnets train`); "
             "pruning 3 epochs (polynomial ramp) at Adam 2e-4, QAT 2 epochs at Adam 1e-5 (2e-4 after pruning) "
             "(`keras_lightnets.pipelines.variants.Recipe`). "
             "Accuracy: LiteRT on the 359 held-out images. Files "
             + ("without tensor names (`--strip-names`)." if args.strip_names else "with tensor names."), "",
             "| model | variant | accuracy | Δ vs Keras (pt) | size KiB | gzip KiB | size / float | "
             "kernel zeros | latency ms | p90 ms | outside XNNPACK |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for model, entry in all_results.items():
        float_size = entry["results"]["float"].size_bytes if "float" in entry["results"] else None
        for name, r in entry["results"].items():
            ratio = f"{r.size_bytes / float_size:.3f}" if float_size else "-"
            latency = "-" if r.latency_ms is None else f"{r.latency_ms:.3f}"
            p90 = "-" if r.p90_ms is None else f"{r.p90_ms:.3f}"
            outside = format_op_counts(r.ops_outside_delegate, empty="-")
            lines.append(f"| {model} | {name} | {r.accuracy:.4f} | {100 * (entry['keras'] - r.accuracy):+.2f} | "
                         f"{r.size_bytes / 1024:.1f} | {r.gzip_bytes / 1024:.1f} | {ratio} | "
                         f"{r.kernel_sparsity:.4f} | {latency} | {p90} | {outside} |")
    lines += ["", "| model | target | met | measured |", "|---|---|---|---|"]
    for model, entry in all_results.items():
        lines += [f"| {model} | {t} | {'yes' if ok else '**no**'} | {m} |" for t, ok, m in entry["checks"]]
    return "\n".join(lines) + "\n"


def plot(all_results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for model, entry in all_results.items():
        res = entry["results"]
        names = list(res)
        left.plot([res[n].size_bytes / 1024 for n in names], [res[n].accuracy for n in names], "o-", label=model)
        for n in names:
            left.annotate(n, (res[n].size_bytes / 1024, res[n].accuracy), fontsize=6)
        right.bar([f"{model}\n{n}" for n in names], [res[n].latency_ms or 0 for n in names])
    left.set_xscale("log")
    left.set_xlabel("size (KiB, log)")
    left.set_ylabel("test accuracy (LiteRT)")
    left.legend(fontsize=7)
    right.set_ylabel("median latency (ms)")
    right.tick_params(axis="x", rotation=90, labelsize=5)
    figure.tight_layout()
    from keras_lightnets.files import atomic_path

    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110)
    plt.close(figure)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=list(DEFAULT_MODELS))
    parser.add_argument("--output", default="bench-output")
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--fine-tune-epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--strip-names", action="store_true",
                        help="write every .tflite without tensor names (as deployed to small devices)")
    args = parser.parse_args(argv)

    import keras

    from keras_lightnets.data.sources import load_images
    from keras_lightnets.files import write_json, write_text
    from keras_lightnets.pipelines import variants
    from keras_lightnets.training import fine_tune

    os.makedirs(args.output, exist_ok=True)
    size = (args.image_size, args.image_size)
    train = load_images("digits", image_size=size, split="train")
    test = load_images("digits", image_size=size, split="test")
    recipe = variants.Recipe(threads=args.threads, runs=args.runs, strip_names=args.strip_names)
    names = variants.check_variant_names(args.variants.split(","))
    all_results = {}
    for model_name in args.models:
        print(f"== {model_name}", file=sys.stderr, flush=True)
        folder = os.path.join(args.output, model_name)
        trained = fine_tune(model_name, "digits", weights=None, image_size=args.image_size,
                            epochs_frozen=args.epochs, epochs_unfrozen=args.fine_tune_epochs,
                            output_dir=os.path.join(folder, "train"), quiet=True)
        model = keras.saving.load_model(trained.best_path, safe_mode=True)
        probabilities = model.predict(test.images, verbose=0)
        keras_accuracy = float((probabilities.argmax(-1) == test.labels).mean())
        results = variants.run_variants(model, names, folder, (train.images, train.labels),
                                        (test.images, test.labels), recipe,
                                        progress=lambda m: print(f"   {m}", file=sys.stderr, flush=True))
        all_results[model_name] = {"keras": keras_accuracy, "results": results,
                                   "checks": checks(results, keras_accuracy)}
    label = machine_label(args.threads)
    text = markdown(all_results, label, args)
    write_text(os.path.join(args.output, "compression.md"), text)
    write_json(os.path.join(args.output, "compression.json"), {
        "machine": label, "image_size": args.image_size,
        "models": {m: {"keras_accuracy": e["keras"], "variants": {n: r.as_dict() for n, r in e["results"].items()},
                       "checks": [{"target": t, "met": ok, "measured": v} for t, ok, v in e["checks"]]}
                   for m, e in all_results.items()}})
    plot(all_results, os.path.join(args.output, "compression.png"))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

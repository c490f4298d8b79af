"""Convert a torchvision checkpoint into a Keras 3 ``.weights.h5`` file, once
(the logic of ``tools/port_weights.py``)::

    python tools/port_weights.py SRC --arch NAME -o OUT.weights.h5

``SRC`` is a torchvision ``state_dict`` (``.safetensors``, or ``.pth``/``.pt`` read
without unpickling anything but tensors, see ``keras_lightnets.weights.torchvision``);
``NAME`` a registered model with a torchvision counterpart (e.g. ``squeezenet1_1``,
``shufflenet_v2_x1_0``, ``mnasnet_b1_100``). The registry's builder makes the
model (ImageNet top, 1000 classes), the checkpoint is ported into it (every
tensor name, shape, stride and size checked before anything is read) and
``model.save_weights`` writes ``OUT`` through a temporary file renamed into place,
so a failure leaves no output. The result
loads with ``weights=OUT`` in Keras 3 and tf_keras.

Exit codes: 0 success, 2 bad arguments, 1 failure; errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from keras_lightnets.errors import InputError
from keras_lightnets.files import temp_file_beside
from keras_lightnets.models.registry import create_model, model_config
from keras_lightnets.weights.torchvision import NoTorchCounterpartError

PROG = "port_weights"
SOURCE_SUFFIXES = (".safetensors", ".pth", ".pt")
OUTPUT_SUFFIX = ".weights.h5"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"{PROG}: error: {message}\n")


def _fail(code: int, message: str) -> int:
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return code


def _check_arguments(src: Path, output: Path) -> str | None:
    """The one-line problem with the paths, or None."""
    if src.suffix.lower() not in SOURCE_SUFFIXES:
        return f"SRC must be a torchvision checkpoint ({', '.join(SOURCE_SUFFIXES)}); received {str(src)!r}"
    if not src.is_file():
        return f"SRC not found: {str(src)!r}"
    if not output.name.endswith(OUTPUT_SUFFIX) or output.name == OUTPUT_SUFFIX:
        return f"-o/--output must be a file name ending in {OUTPUT_SUFFIX!r}; received {str(output)!r}"
    if not output.parent.is_dir():
        return f"the folder of -o/--output does not exist: {str(output.parent)!r}"
    return None


def port(src: str | os.PathLike, arch: str, output: str | os.PathLike) -> Path:
    """Port ``src`` into the registered model ``arch`` and write ``output`` atomically."""
    output = Path(output)
    model = create_model(arch, weights=os.fspath(src))
    fd, tmp = temp_file_beside(output, suffix=OUTPUT_SUFFIX)  # pid-marked: a killed run's is cleaned up
    os.close(fd)
    try:
        model.save_weights(tmp)
        os.replace(tmp, output)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return output


def main(argv: list[str] | None = None) -> int:
    """The command line: 0 success, 2 bad arguments, 1 failure (one line on stderr)."""
    parser = _Parser(prog=PROG, description="Convert a torchvision checkpoint into a Keras .weights.h5 file.")
    parser.add_argument("src", metavar="SRC", help="torchvision state_dict: .safetensors, .pth or .pt")
    parser.add_argument("--arch", required=True, metavar="NAME", help="registered model name, e.g. squeezenet1_1")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help=f"output file, ending in {OUTPUT_SUFFIX}")
    args = parser.parse_args(argv)
    src, output = Path(args.src), Path(args.output)
    problem = _check_arguments(src, output)
    if problem:
        return _fail(2, problem)
    try:
        model_config(args.arch)
    except ValueError as err:
        return _fail(2, f"--arch: {err}")
    try:
        written = port(src, args.arch, output)
    except NoTorchCounterpartError as err:
        return _fail(2, f"--arch {args.arch!r}: {err}")
    except InputError as err:  # a checkpoint that is hostile or does not fit the architecture
        return _fail(2, err)
    except (ValueError, OSError) as err:
        return _fail(1, err)
    print(f"{PROG}: wrote {written} ({args.arch}, from {src})")
    return 0

"""Convert a torchvision checkpoint into a Keras 3 ``.weights.h5`` file, once (what
``tools/port_weights.py`` runs; its command line is ``keras_lightnets.cli.port_weights``)::

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

"""

from __future__ import annotations

import os
from pathlib import Path

from keras_lightnets.files import atomic_path
from keras_lightnets.models.registry import create_model

SOURCE_SUFFIXES = (".safetensors", ".pth", ".pt")
OUTPUT_SUFFIX = ".weights.h5"


def check_paths(src: Path, output: Path) -> str | None:
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
    with atomic_path(output, suffix=OUTPUT_SUFFIX) as tmp:  # pid-marked: a killed run's is cleaned up
        model.save_weights(tmp)
    return output

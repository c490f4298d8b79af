"""``python -m keras_lightnets``: the ``lightnets`` command (same arguments and exit codes)."""

import sys

from keras_lightnets.cli import main

if __name__ == "__main__":
    sys.exit(main())

"""The lab's habit: `python train.py --targets OVA OK --channels 277 380` is `spectratorch train ...`."""

import sys

from spectratorch.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))

#!/usr/bin/env python3
"""Train, evaluate and export the detectors. `python train.py --help` lists the commands and every option."""
import sys

from training.cli import main

if __name__ == "__main__":
    sys.exit(main())

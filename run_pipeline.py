#!/usr/bin/env python3
"""Detect and track small infrared targets. `python run_pipeline.py --help` lists every option."""
import os
import sys

# Our own messages name bad files clearly; keep OpenCV's and FFmpeg's console chatter out of them.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

from pipeline.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

"""Runtime of the IRST pipeline: typed frames, detections and tracks flowing source -> detector -> tracker -> sinks.

Kept free of torch: it installs and runs with numpy, opencv-python-headless, onnxruntime, scipy,
filterpy and pyyaml only.
"""

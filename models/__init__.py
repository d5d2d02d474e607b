"""Torch models of the detectors (BAFE-Net and its FCOS core): backbone, neck, heads, losses, export.

Training-only code: needs the ``train`` extra (torch). The runtime (pipeline/, engines/) never imports it.
"""

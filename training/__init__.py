"""Training side of the project: DenseSIRST data, BAG-CP augmentation, VOC evaluation (torch lives only here and in
models/). Import the submodules directly; this package imports nothing so that numpy-only users stay light."""

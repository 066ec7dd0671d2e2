"""The hardware-free IR at the bottom of archsim: what a workload is, as plain
data, with no simulator behind it.

  layer_spec  LayerSpec (a GEMM layer: its shape, conv geometry, weights,
              format, the activation tensors it reads and writes), VectorOp
              (a non-GEMM operator), TensorInfo and Workload (the DAG)
  formats     WeightFormat and its kinds: what compression produced, as data
              (storage bits, bytes per tile, side data, decode work)
  errors      ArchsimError: the one error type for a user's mistake
  progress    the progress bars every long stage draws (a leaf utility both
              sides use: compression in workloads, tiling and studies here)

`workloads/` (models, compression, compile, importers) imports only this
package from archsim; the simulator (tiling, allocator, engine, components)
imports it and never `workloads` (tests/test_layering.py).
"""

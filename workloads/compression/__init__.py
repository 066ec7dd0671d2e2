"""Compression methods on real weights. One module per method.

Contract (every method follows it):

    result = compress(model, method, calib=None, seed=0, **params)

  * `model` is an nn.Module; it is not modified (methods work on a deep copy).
  * `calib` is calibration data where the method needs it (PQ activations,
    SSVQ / SWIS retraining): an iterable of (inputs, labels) batches.
  * result.model   : the compressed module; its forward pass uses the
                     reconstructed weights (PQ: the lookup tables).
  * result.formats : {module qualified name (as in model.named_modules()):
                      WeightFormat} for every compressed Conv2d / Linear.
  * result.info    : method, params, wall_s, weight_mse, bits_per_weight.
"""

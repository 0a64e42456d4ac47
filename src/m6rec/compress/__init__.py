"""Compression of the ``m6`` text model for serving and on-device use: int8 dynamic
quantisation and int8 / fp16 tables (`quantize`), global magnitude pruning stored sparse
(`prune`), distillation into a small student (`distill`), and ONNX export with an onnxruntime
recommender (`onnx_export`, `onnx_model`). Models: ``m6-compact`` (`compact.CompactM6`) and
``m6-onnx`` (`onnx_model.OnnxM6`); `run.compress_dir` is what ``m6rec compress`` calls.
Nothing heavy is imported here."""

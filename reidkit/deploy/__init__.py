"""Deployment: ONNX export of a trained model (:mod:`.export`, checked by :mod:`.verify`)
and extraction with ONNX Runtime (:mod:`.runtime`), which needs neither torch nor onnx."""

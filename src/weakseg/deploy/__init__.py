"""Shipping a trained student: ONNX export and an onnxruntime predictor with the same interface."""

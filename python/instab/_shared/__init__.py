"""Helpers shared by every layer: validation, image decoding, ONNX graph helpers, the legacy .pth reader."""

__all__: list[str] = []

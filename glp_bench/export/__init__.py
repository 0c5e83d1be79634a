"""The export stage: every depth to ONNX (``stage``), its deployment variants (``variants``, ``int8``,
``int8_select``, ``quant_exclude``) and their validation and scoring through ONNX Runtime (``validate``)."""

"""Stand-in for onnxruntime.quantization."""

from _stand_in import module_getattr, placeholder

quantize_static = placeholder(__name__, "quantize_static")
CalibrationDataReader = placeholder(__name__, "CalibrationDataReader")
QuantType = placeholder(__name__, "QuantType")
QuantFormat = placeholder(__name__, "QuantFormat")

__getattr__ = module_getattr(__name__)

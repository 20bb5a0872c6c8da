"""Stand-in for torch: used by the framework's EmbeddingService (ONNX export) only."""

from _stand_in import module_getattr

__getattr__ = module_getattr(__name__)

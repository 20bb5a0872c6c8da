"""Stand-in for onnxruntime: used by the framework's EmbeddingService and memory set-up only."""

from _stand_in import module_getattr

__getattr__ = module_getattr(__name__)

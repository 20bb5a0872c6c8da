"""Stand-in for transformers: used by the framework's EmbeddingService only."""

from _stand_in import module_getattr, placeholder

AutoTokenizer = placeholder(__name__, "AutoTokenizer")
AutoModel = placeholder(__name__, "AutoModel")

__getattr__ = module_getattr(__name__)

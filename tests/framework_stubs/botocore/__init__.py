"""Stand-in for botocore (AWS SDK core): used by the framework's Bedrock provider only."""

from _stand_in import module_getattr

__getattr__ = module_getattr(__name__)

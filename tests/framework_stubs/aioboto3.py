"""Stand-in for aioboto3 (AWS SDK): used by the framework's Bedrock provider only."""

from _stand_in import module_getattr

__getattr__ = module_getattr(__name__)

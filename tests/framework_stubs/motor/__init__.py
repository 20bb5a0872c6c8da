"""Stand-in for motor (async MongoDB driver): used by the framework's MongoDB message store."""

from _stand_in import module_getattr

__getattr__ = module_getattr(__name__)

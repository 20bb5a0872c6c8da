"""Stand-in for docker (Docker SDK): used by the framework's sandbox builder and pool only."""

from _stand_in import module_getattr

__getattr__ = module_getattr(__name__)

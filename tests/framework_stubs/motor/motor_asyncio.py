"""Stand-in for motor.motor_asyncio."""

from _stand_in import module_getattr, placeholder

AsyncIOMotorClient = placeholder(__name__, "AsyncIOMotorClient")

__getattr__ = module_getattr(__name__)

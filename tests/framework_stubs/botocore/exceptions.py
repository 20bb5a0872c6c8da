"""Stand-in for botocore.exceptions."""

from _stand_in import module_getattr, placeholder

# Named in the Bedrock provider's except clauses: it must stay an exception class.
ClientError = placeholder(__name__, "ClientError", exception=True)

__getattr__ = module_getattr(__name__)

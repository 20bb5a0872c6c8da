"""Interop with the jazzmine framework's own LLM-calling parts.

The framework's ``MessageEnhancer``, ``ConversationSummarizer``, ``FlowSelector``, the
agent's slot extraction, its conversation title and its agent loop each ask the model
for a reply of a fixed shape (a JSON object, a JSON array, one line, the agent's tags) and
parse it; a small model left free rarely writes that shape. Here a call's messages are
recognised as one of those parts by the framework's own prompt constants, read from the
framework modules already imported (``sys.modules`` only: nothing is imported here, and
without the framework nothing of this runs), and the part's reply is held to a shape its
parser accepts: a JSON schema or a GBNF grammar, as ``response_format`` and ``grammar``
are. A prompt whose text is not one this package knows (another framework version) is
left alone: no constraint is better than a wrong one.

Others import ``recognise.shape_for`` (the one entry point, used by ``call.prepare``) and
``recognise.RECOGNISED_VERSIONS``; ``shapes`` is this package's own.
"""

"""A template's own tool-call format, learnt by rendering the template (``derive``),
described by ``CallFormat`` (``shape``), read back from a reply (``read``) and enforced
by a grammar (``rules``). See docs/tools.md."""

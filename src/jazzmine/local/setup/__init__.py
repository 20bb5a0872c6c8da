"""`jazzmine setup`: build the pinned llama.cpp, install the models, run the logged
commands (``setup.run`` is the front door). Used by cli/ and the tests.
"""

"""Models by name: pulled from the Hugging Face Hub (``hub``), found on disk without the
network (``store``: ``hf:`` names, what is installed), chosen as llama.cpp's ``-hf``
chooses (``choose``) and described from their GGUF header (``describe``). Imports nothing."""

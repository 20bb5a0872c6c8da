"""The `jazzmine` command (``cli.main:main``): parser, chat loop, set-up checks, reply
printing, model options. Nothing imports cli/.
"""

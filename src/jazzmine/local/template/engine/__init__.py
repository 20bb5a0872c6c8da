"""The sandboxed Jinja engine a chat template runs in, within a time and size budget.
Never imports template/; template/ builds on it (prompt/, call/: ChatTemplate only).
"""

"""Fake model binaries, for faults the real llama.cpp cannot produce on demand.

Each is a small Python program that takes ``-p PROMPT`` like the spec's binaries. They
record their pid (and their child's) in files named by ``FAKE_PID_FILE`` so tests can
check nothing outlives a call.
"""

PRELUDE = """
import os, sys, time, signal
if "--help" in sys.argv:
    print("usage: fake -p PROMPT")
    sys.exit(0)
prompt = sys.argv[sys.argv.index("-p") + 1] if "-p" in sys.argv else ""
pid_file = os.environ.get("FAKE_PID_FILE")
if pid_file:
    with open(pid_file, "a") as f:
        f.write(f"{os.getpid()}\\n")
def say(text, delay=0.0):
    sys.stdout.write(text)
    sys.stdout.flush()
    time.sleep(delay)
"""

# Prints a few words, then dies by the signal named in FAKE_SIGNAL.
CRASH = (
    PRELUDE
    + """
say("Hello ", 0.05); say("from ", 0.05); say("the model", 0.05)
sys.stderr.write("ggml_abort: something went wrong\\n"); sys.stderr.flush()
os.kill(os.getpid(), getattr(signal, os.environ.get("FAKE_SIGNAL", "SIGSEGV")))
"""
)

# Prints a word, then hangs, ignoring SIGTERM, with a grandchild that hangs too.
HANG = (
    PRELUDE
    + """
import subprocess
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
if pid_file:
    with open(pid_file, "a") as f:
        f.write(f"{child.pid}\\n")
say("thinking")
time.sleep(600)
"""
)

# Floods stderr with megabytes while replying: must never deadlock.
STDERR_FLOOD = (
    PRELUDE
    + """
line = ("x" * 1023 + "\\n").encode()
for _ in range(int(os.environ.get("FAKE_MEGABYTES", "8")) * 1024):
    os.write(2, line)
say("done flooding")
"""
)

# A reply of megabytes on stdout.
STDOUT_FLOOD = (
    PRELUDE
    + """
chunk = "word " * 200
for _ in range(int(os.environ.get("FAKE_MEGABYTES", "4")) * 1024):
    say(chunk)
"""
)

# Bytes that are not UTF-8, and a multi-byte character split across writes.
BAD_UTF8 = (
    PRELUDE
    + """
os.write(1, b"caf\\xc3"); time.sleep(0.05); os.write(1, b"\\xa9 \\xff\\xfe ok")
"""
)

# Exits with a code and a message on stderr.
FAIL = (
    PRELUDE
    + """
say("partial ")
sys.stderr.write("error: failed to load model 'x.gguf'\\n")
sys.exit(int(os.environ.get("FAKE_EXIT", "3")))
"""
)

# Succeeds with nothing on stdout.
SILENT = (
    PRELUDE
    + """
sys.stderr.write("log line\\n")
"""
)

# Echoes the prompt first, as many CLIs do, then replies; reads stdin to show it is closed.
ECHO = (
    PRELUDE
    + """
data = sys.stdin.read()
say(prompt); say("Reply with stdin=" + repr(data))
"""
)

# Streams words slowly; used for cancellation and stop tests.
SLOW_WORDS = (
    PRELUDE
    + """
for i in range(int(os.environ.get("FAKE_WORDS", "200"))):
    say(f"w{i} ", float(os.environ.get("FAKE_DELAY", "0.02")))
"""
)

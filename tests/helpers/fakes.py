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

# Stands for llama-completion (its --help names the flags that make it that kind): reads
# the prompt file given with -f, prints FAKE_REPLY a word at a time, " [end of text]"
# unless FAKE_NO_EOT is set (then -n ended the reply), the closing empty line, and
# common_perf_print's closing statistics on stderr, as llama.cpp's logger writes them.
# On SIGINT it prints the statistics and exits 130, as llama-completion's handler does.
# FAKE_CUT=1 is the unflushed logger at exit: the last word, the closing and the
# statistics never come, and the status is still 0.
LLAMA_COMPLETION = """
import os, sys, signal, time
if "--help" in sys.argv:
    print("-m --model -f --file -n --n-predict -c --ctx-size -s --seed --temp --no-escape")
    print("--offline --simple-io --no-warmup --no-display-prompt -no-cnv --no-conversation")
    sys.exit(0)
prompt = open(sys.argv[sys.argv.index("-f") + 1]).read()
words = os.environ.get("FAKE_REPLY", "The colour I like").split(" ")
cut = os.environ.get("FAKE_CUT") == "1"
def statistics(generated):
    sys.stderr.write(
        "common_perf_print:    sampling time =       0.40 ms\\n"
        f"common_perf_print:    samplers time =       0.20 ms / {8 + generated:5d} tokens\\n"
        "common_perf_print:        load time =      90.00 ms\\n"
        "common_perf_print: prompt eval time =      20.00 ms /     8 tokens "
        "(    2.50 ms per token,   400.00 tokens per second)\\n"
        f"common_perf_print:        eval time =      10.00 ms / {generated - 1:5d} runs   "
        "(    3.33 ms per token,   300.00 tokens per second)\\n"
        f"common_perf_print:       total time =     120.00 ms / {7 + generated:5d} tokens\\n"
        "common_perf_print:    graphs reused =          2\\n"
    )
    sys.stderr.flush()
sent = 0
def interrupted(signum, frame):
    sys.stdout.write("\\n"); sys.stdout.flush()
    statistics(sent)
    os._exit(130)
signal.signal(signal.SIGINT, interrupted)
sys.stderr.write(f"generate: n_ctx = 512, n_batch = 2048, n_predict = {len(words)}, n_keep = 0\\n")
sys.stderr.flush()
for i, word in enumerate(words[:-1] if cut else words):
    sys.stdout.write(word if i == 0 else " " + word); sys.stdout.flush()
    sent += 1
    time.sleep(0.01)
if cut:
    sys.exit(0)
if not os.environ.get("FAKE_NO_EOT"):
    sys.stdout.write(" [end of text]\\n"); sys.stdout.flush()
    time.sleep(0.05)
sys.stdout.write("\\n\\n"); sys.stdout.flush()
statistics(sent)
"""

# Stands for today's llama-cli (a chat UI: --single-turn, --chat-template): echoes the
# prompt after "> ", prints FAKE_REPLY and ends with "Exiting..."; FAKE_CUT=1 exits 0
# before that line, which a finished llama-cli always prints.
LLAMA_CLI = """
import os, sys
if "--help" in sys.argv:
    print("-m -f --file -n -c -s --temp -st --single-turn --jinja --chat-template")
    print("--no-show-timings -lv --no-escape --offline --simple-io --no-warmup")
    sys.exit(0)
prompt = open(sys.argv[sys.argv.index("-f") + 1]).read()
sys.stdout.write("\\n> " + prompt + "\\n")
sys.stdout.write(os.environ.get("FAKE_REPLY", "The colour I like"))
if os.environ.get("FAKE_CUT") != "1":
    sys.stdout.write("\\n\\n\\nExiting...\\n")
"""

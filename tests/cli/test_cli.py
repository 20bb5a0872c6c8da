"""The `jazzmine` command as a person meets it: set-up hints, chat over a pipe and a terminal.

The CLI runs as a subprocess, as a user starts it. A fake `-p PROMPT` program stands in
for the model (it logs every prompt it gets, can fail or stream slowly on demand), so
these need no llama.cpp build; the `real` tests at the end use the default model (a chat
on a terminal, `run`, `chat` over a pipe, `doctor --json`). Terminal tests run the CLI
on a pseudo-terminal, so Ctrl-C and line length are the kernel's terminal behaviour, not
a simulation of it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.fakes import PRELUDE

# Logs the prompt, fails on the calls listed in FAKE_FAIL_CALLS, refuses a prompt longer
# than FAKE_CONTEXT characters as llama-completion refuses one over its context (a
# character standing for a token), streams "slowly" for minutes when the last user
# message is "slow", else replies "heard <message>". It writes the message only when
# short: a long one is reported by its length.
CHAT_FAKE = (
    PRELUDE
    + """
import json
log = os.environ["FAKE_PROMPT_LOG"]
with open(log, "a") as f:
    f.write(json.dumps(prompt) + "\\n")
with open(log) as f:
    call = sum(1 for _ in f)
context = int(os.environ.get("FAKE_CONTEXT", "0"))
if context and len(prompt) > context:
    sys.stderr.write(f"main: prompt is too long ({len(prompt)} tokens, max {context})\\n")
    sys.exit(1)
if str(call) in os.environ.get("FAKE_FAIL_CALLS", "").split(","):
    say("half a rep")
    sys.stderr.write("error: the fake failed on purpose\\n")
    sys.exit(3)
last = prompt.rsplit("User: ", 1)[-1].removesuffix("\\nAssistant: ")
if last == "slow":
    for _ in range(6000):
        say("slowly ", 0.1)
say("heard " + (last if len(last) <= 100 else f"{len(last)} characters"))
"""
)
WAIT_SECONDS = 60.0  # a bound for a wait that should take a second, never a measurement
REAL_WAIT_SECONDS = 600.0  # the real model loads on a busy two-core machine
LONG_LINE = " ".join(f"w{i:05d}" for i in range(1667))[:10_000]


def jazzmine(
    *args: str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = REAL_WAIT_SECONDS,
) -> subprocess.CompletedProcess[str]:
    """Run the `jazzmine` command as a user would, in this environment unless given one."""
    return subprocess.run(
        [sys.executable, "-m", "jazzmine.local.cli.main", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


@pytest.fixture
def world(tmp_path: Path, make_script: Callable[..., str]) -> World:
    return World(tmp_path, make_script("fake-model", CHAT_FAKE))


class World:
    """An empty home (nothing set up), the fake model and what it recorded."""

    def __init__(self, root: Path, fake: str) -> None:
        self.home = root / "home"
        self.home.mkdir()
        self.fake = fake
        self.prompt_log = root / "prompts.jsonl"
        self.pid_file = root / "pids"
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("JAZZMINE_", "FAKE_")) and key != "XDG_CACHE_HOME"
        }
        self.env.update(
            HOME=str(self.home),
            FAKE_PROMPT_LOG=str(self.prompt_log),
            FAKE_PID_FILE=str(self.pid_file),
            TERM="xterm",
        )

    def jazzmine(
        self, *args: str, stdin: str = "", env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return jazzmine(*args, stdin=stdin, env={**self.env, **(env or {})}, timeout=WAIT_SECONDS)

    def prompts(self) -> list[str]:
        if not self.prompt_log.exists():
            return []
        return [json.loads(line) for line in self.prompt_log.read_text().splitlines()]

    def fake_pids(self) -> list[int]:
        if not self.pid_file.exists():
            return []
        return [int(line) for line in self.pid_file.read_text().split()]

    def assert_no_fake_running(self) -> None:
        pids = self.fake_pids()
        assert pids, "the fake never ran"
        assert [pid for pid in pids if _alive(pid)] == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ---------- without `jazzmine setup` ----------
@pytest.mark.parametrize(
    "command",
    [["run", "Hello"], ["chat"], ["doctor"], ["doctor", "--json"], ["worker"]],
    ids=["run", "chat", "doctor", "doctor-json", "worker"],
)
def test_every_command_that_needs_setup_says_to_run_it(world: World, command: list[str]) -> None:
    done = world.jazzmine(*command, stdin="Hello\n")
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("jazzmine: ")
    assert "run `jazzmine setup` first" in lines[0]
    assert str(world.home) in lines[0]  # where it looked
    if "--json" in command:
        report = json.loads(done.stdout)
        assert report["ok"] is False and report["setup_needed"] is True
    else:
        assert done.stdout == ""
    assert world.fake_pids() == []


def test_a_binary_the_user_names_needs_no_setup(world: World) -> None:
    done = world.jazzmine("run", "Hello", "--binary", world.fake)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "heard Hello\n"
    environment = world.jazzmine("run", "Hi", env={"JAZZMINE_LLAMA_BIN": world.fake})
    assert environment.returncode == 0, environment.stderr
    assert environment.stdout == "heard Hi\n"
    assert world.prompts() == ["User: Hello\nAssistant: ", "User: Hi\nAssistant: "]


def test_a_llama_cpp_binary_without_model_asks_for_setup_or_a_model(
    world: World, make_script: Callable[..., str], tmp_path: Path
) -> None:
    # Says it takes llama.cpp's flags, so it is given a model and the options as flags;
    # replies with its command line (the prompt file's name differs per call), and ends
    # with llama.cpp's closing statistics, as a finished llama-completion does.
    llama_like = make_script(
        "llama-like",
        """
        import sys
        if "--help" in sys.argv:
            print("--no-conversation --no-display-prompt --file -m -n --temp -c -s")
            sys.exit(0)
        argv = sys.argv[1:]
        del argv[argv.index("-f") : argv.index("-f") + 2]
        print(" ".join(argv))
        print("common_perf_print:       total time =  1.00 ms /  2 tokens", file=sys.stderr)
        """,
    )
    missing = world.jazzmine("run", "Hello", "--binary", llama_like)
    assert missing.returncode == 1 and missing.stdout == ""
    assert "run `jazzmine setup` first, or pass --model" in missing.stderr
    model = tmp_path / "mine.gguf"
    model.write_bytes(b"not read by this fake")
    options = ["--n-ctx", "2048", "--temperature", "0.25", "--max-tokens", "7", "--seed", "5"]
    for command, stdin in ((["run", "Hello"], ""), (["chat"], "Hello\n")):
        given = world.jazzmine(
            *command, "--binary", llama_like, "--model", str(model), *options, stdin=stdin
        )
        assert given.returncode == 0, given.stderr
        flags = given.stdout.split()
        for flag, value in (("-m", str(model)), ("-c", "2048"), ("--temp", "0.25")):
            assert flags[flags.index(flag) + 1] == value
        assert flags[flags.index("-n") + 1] == "7" and flags[flags.index("-s") + 1] == "5"


def test_a_missing_binary_is_named_not_blamed_on_setup(world: World, tmp_path: Path) -> None:
    for command in (["run", "Hello"], ["chat"]):
        done = world.jazzmine(*command, "--binary", str(tmp_path / "nowhere"))
        assert done.returncode == 1
        assert "nowhere" in done.stderr and "setup" not in done.stderr


def test_run_reports_a_failed_call_and_exits_non_zero(world: World) -> None:
    done = world.jazzmine("run", "Hello", "--binary", world.fake, env={"FAKE_FAIL_CALLS": "1"})
    assert done.returncode == 1
    assert done.stdout == "half a rep\n"  # what was streamed before the failure
    assert "exited with code 3" in done.stderr and "failed on purpose" in done.stderr
    world.assert_no_fake_running()


# ---------- chat over a pipe ----------
def test_chat_carries_the_history_and_the_system_message(world: World) -> None:
    done = world.jazzmine(
        "chat", "--binary", world.fake, "--system", "Be brief.", stdin="apple\nbanana\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "heard apple\nheard banana\n"
    assert world.prompts() == [
        "System: Be brief.\nUser: apple\nAssistant: ",
        "System: Be brief.\nUser: apple\nAssistant: heard apple\nUser: banana\nAssistant: ",
    ]
    world.assert_no_fake_running()


def test_chat_goes_on_after_a_failed_turn_which_is_dropped(world: World) -> None:
    done = world.jazzmine(
        "chat", "--binary", world.fake, stdin="one\ntwo\nthree\n", env={"FAKE_FAIL_CALLS": "2"}
    )
    assert done.returncode == 0, done.stderr
    assert "heard one" in done.stdout and "heard three" in done.stdout
    assert "exited with code 3" in done.stderr and "failed on purpose" in done.stderr
    # The failed turn left nothing behind: the third call sees turn one only.
    assert world.prompts()[2] == "User: one\nAssistant: heard one\nUser: three\nAssistant: "
    world.assert_no_fake_running()


def test_a_long_line_from_a_pipe_reaches_the_model_whole(world: World) -> None:
    assert len(LONG_LINE) == 10_000
    done = world.jazzmine("chat", "--binary", world.fake, stdin=LONG_LINE + "\nshort\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "heard 10000 characters\nheard short\n"
    assert world.prompts()[0] == f"User: {LONG_LINE}\nAssistant: "


def test_a_chat_longer_than_the_context_leaves_out_its_oldest_turns_and_goes_on(
    world: World,
) -> None:
    lines = ["apple", "banana", "cherry", "damson", "elder"]
    done = world.jazzmine(
        "chat",
        "--binary",
        world.fake,
        "--system",
        "Be brief.",
        stdin="".join(line + "\n" for line in lines),
        env={"FAKE_CONTEXT": "110"},
    )
    assert done.returncode == 0, done.stderr
    # Every turn was answered: the chat went on past the context.
    assert done.stdout == "".join(f"heard {line}\n" for line in lines)
    prompts = world.prompts()
    answered = [prompt for prompt in prompts if len(prompt) <= 110]
    assert len(answered) == len(lines)
    refused = [prompt for prompt in prompts if len(prompt) > 110]
    assert refused, "the history never outgrew the fake's context"
    for prompt, line in zip(answered, lines, strict=True):
        # The system message and the new line are always sent; the oldest turns go.
        assert prompt.startswith("System: Be brief.\nUser: ")
        assert prompt.endswith(f"User: {line}\nAssistant: ")
    assert "User: apple" not in answered[-1]
    # Once left out, old turns stay out: a later turn is not refused first again.
    assert len(refused) < len(lines) - 1
    assert "left out" in done.stderr
    world.assert_no_fake_running()


def test_a_line_longer_than_the_context_alone_is_a_failed_turn(world: World) -> None:
    done = world.jazzmine(
        "chat", "--binary", world.fake, stdin="x" * 200 + "\nshort\n", env={"FAKE_CONTEXT": "110"}
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "heard short\n"
    assert "the prompt is" in done.stderr and "tokens of context" in done.stderr


def test_end_of_input_ends_the_chat_cleanly(world: World) -> None:
    done = world.jazzmine("chat", "--binary", world.fake, stdin="")
    assert (done.returncode, done.stdout) == (0, "")
    assert world.prompts() == []


# ---------- chat on a terminal ----------
class Terminal:
    """The CLI on a pseudo-terminal that is its controlling terminal, as in a shell."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        argv = [sys.executable, "-m", "jazzmine.local.cli.main", *args]
        pid, fd = pty.fork()
        if pid == 0:  # the child: exec at once, nothing else runs here
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
                # As a shell starts a job in the foreground: Ctrl-C at its default and no
                # signal blocked. An ignored SIGINT survives exec, and the tests may run
                # with one (a shell ignores it in a job started with "&"): Python would
                # then never raise KeyboardInterrupt and Ctrl-C would do nothing.
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, [])
                os.execve(sys.executable, argv, env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.returncode: int | None = None
        self._output = bytearray()
        self._changed = threading.Condition()
        # The terminal is read all the time, so the CLI never blocks writing to it.
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError as error:  # EIO: the last holder of the terminal is gone
                assert error.errno == errno.EIO
                data = b""
            with self._changed:
                if not data:
                    self._changed.notify_all()
                    return
                self._output += data
                self._changed.notify_all()

    @property
    def text(self) -> str:
        with self._changed:
            return self._output.decode("utf-8", errors="replace")

    def wait_for(self, wanted: str, after: int = 0, seconds: float = WAIT_SECONDS) -> int:
        """Wait until ``wanted`` appears at or after ``after``; return where it ends."""
        end = time.monotonic() + seconds
        with self._changed:
            while True:
                text = self._output.decode("utf-8", errors="replace")
                at = text.find(wanted, after)
                if at >= 0:
                    return at + len(wanted)
                left = end - time.monotonic()
                if left <= 0 or not self._reader.is_alive():
                    raise AssertionError(f"{wanted!r} never came; the terminal shows:\n{text}")
                self._changed.wait(left)

    def type(self, keys: str) -> None:
        data = memoryview(keys.encode())
        while data:
            data = data[os.write(self.fd, data) :]

    def wait_exit(self) -> int:
        end = time.monotonic() + WAIT_SECONDS
        while self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
            elif time.monotonic() > end:
                raise AssertionError(f"the CLI did not exit; the terminal shows:\n{self.text}")
            else:
                time.sleep(0.05)
        return self.returncode

    def close(self) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.wait_exit()
        self._reader.join(WAIT_SECONDS)
        os.close(self.fd)


@pytest.fixture
def terminal(world: World) -> Iterator[Callable[..., Terminal]]:
    opened: list[Terminal] = []

    def open_terminal(*args: str) -> Terminal:
        opened.append(Terminal(list(args), world.env))
        return opened[-1]

    yield open_terminal
    for each in opened:
        each.close()


def test_a_long_typed_line_reaches_the_model_whole(
    world: World, terminal: Callable[..., Terminal]
) -> None:
    # A terminal in line mode holds 4,095 bytes of a line and drops the rest.
    chat = terminal("chat", "--binary", world.fake)
    at = chat.wait_for("you> ")
    chat.type(LONG_LINE + "\r")
    at = chat.wait_for("heard 10000 characters", at)
    chat.wait_for("you> ", at)
    chat.type("\x04")  # Ctrl-D
    assert chat.wait_exit() == 0
    assert world.prompts() == [f"User: {LONG_LINE}\nAssistant: "]


def test_ctrl_c_stops_a_reply_and_the_chat_goes_on(
    world: World, terminal: Callable[..., Terminal]
) -> None:
    chat = terminal("chat", "--binary", world.fake)
    at = chat.wait_for("you> ")
    chat.type("slow\r")
    at = chat.wait_for("slowly slowly", at)  # mid-reply
    (model_pid,) = world.fake_pids()
    chat.type("\x03")  # Ctrl-C: the terminal sends SIGINT to the CLI, not to the model
    at = chat.wait_for("(stopped)", at)
    at = chat.wait_for("you> ", at)
    assert not _alive(model_pid)  # ended and reaped before the prompt came back
    chat.type("after\r")
    at = chat.wait_for("heard after", at)
    chat.wait_for("you> ", at)
    chat.type("\x04")
    assert chat.wait_exit() == 0
    first, second = world.prompts()
    assert first == "User: slow\nAssistant: "
    # What was shown of the stopped reply stays in the conversation.
    assert second.startswith("User: slow\nAssistant: slowly slowly")
    assert second.endswith("slowly\nUser: after\nAssistant: ")
    world.assert_no_fake_running()


def test_ctrl_c_at_the_prompt_gives_a_new_prompt(
    world: World, terminal: Callable[..., Terminal]
) -> None:
    chat = terminal("chat", "--binary", world.fake)
    at = chat.wait_for("you> ")
    chat.type("never sent")
    at = chat.wait_for("never sent", at)
    chat.type("\x03")
    at = chat.wait_for("you> ", at)
    chat.type("hello\r")
    at = chat.wait_for("heard hello", at)
    chat.wait_for("you> ", at)
    chat.type("\x04")
    assert chat.wait_exit() == 0
    assert world.prompts() == ["User: hello\nAssistant: "]


def test_a_failed_turn_on_a_terminal_is_reported_and_the_chat_goes_on(
    world: World, terminal: Callable[..., Terminal]
) -> None:
    world.env["FAKE_FAIL_CALLS"] = "1"
    chat = terminal("chat", "--binary", world.fake)
    at = chat.wait_for("you> ")
    chat.type("first\r")
    at = chat.wait_for("failed on purpose", at)
    at = chat.wait_for("you> ", at)
    chat.type("second\r")
    at = chat.wait_for("heard second", at)
    chat.wait_for("you> ", at)
    chat.type("\x04")
    assert chat.wait_exit() == 0
    assert world.prompts()[1] == "User: second\nAssistant: "


# ---------- the real default model ----------
def test_two_turns_with_the_default_model(
    real_build: tuple[Path, Path], tmp_path: Path, make_script: Callable[..., str]
) -> None:
    world = World(tmp_path, make_script("unused", CHAT_FAKE))
    world.env["HOME"] = os.environ.get("HOME", str(Path.home()))  # where setup put the build
    if "XDG_CACHE_HOME" in os.environ:
        world.env["XDG_CACHE_HOME"] = os.environ["XDG_CACHE_HOME"]
    chat = Terminal(["chat", "--max-tokens", "16", "--temperature", "0"], world.env)
    try:
        at = chat.wait_for("you> ", seconds=REAL_WAIT_SECONDS)
        replies = []
        for line in ("Hello!", "Name a colour."):
            chat.type(line + "\r")
            start = chat.wait_for("model> ", at, seconds=REAL_WAIT_SECONDS)
            at = chat.wait_for("you> ", start, seconds=REAL_WAIT_SECONDS)
            # The reply, less the terminal's control sequences (bracketed paste, CR).
            shown = chat.text[start : at - len("you> ")]
            replies.append(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", shown))
        chat.type("\x04")
        assert chat.wait_exit() == 0
    finally:
        chat.close()
    assert all(reply.strip() for reply in replies), replies


@pytest.mark.real
def test_cli_run_streams_a_reply() -> None:
    done = jazzmine("run", "Name a colour.", "--max-tokens", "8", "--temperature", "0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


@pytest.mark.real
def test_cli_chat_keeps_history() -> None:
    for keep_alive in ("5m", "0"):  # warm (the default) and a process per turn
        done = jazzmine(
            "chat",
            "--max-tokens",
            "6",
            "--temperature",
            "0",
            "--keep-alive",
            keep_alive,
            stdin="Hello\nAnd again\n",
        )
        assert done.returncode == 0, done.stderr
        assert len([line for line in done.stdout.splitlines() if line.strip()]) >= 2


def test_cli_doctor_json(completion_bin: str, model_path: str) -> None:
    done = jazzmine("doctor", "--json")
    report = json.loads(done.stdout)
    assert done.returncode == 0, done.stderr
    assert report["ok"] is True
    assert report["binary"] == completion_bin and report["model"] == model_path
    assert report["binary_kind"] == "llama-completion" and "version" in report["binary_version"]
    assert report["server"] == {"found": True, "starts": True}
    broken = jazzmine("doctor", "--json", "--binary", "/nonexistent/llama")
    assert broken.returncode == 1 and json.loads(broken.stdout)["ok"] is False
    assert os.path.exists(model_path)

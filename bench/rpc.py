"""RPC workers: load time and tokens per second, local vs one and two workers, per-call
and warm, on loopback and over a simulated network.

    sudo .venv-bench/bin/python bench/rpc.py      (root: it creates network namespaces)

The link is made here and removed afterwards: two network namespaces joined by a veth
pair, the client in one and the workers in the other; the bytes crossing it are counted.
No traffic leaves those namespaces or the loopback interface.
Writes bench/results/rpc.md and rpc.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from common import machine, machine_line, save

CLIENT_NS, WORKER_NS = "jazzmine-bench-client", "jazzmine-bench-workers"
CLIENT_IP, WORKER_IP = "10.231.0.1", "10.231.0.2"
PROMPT_TEXT = "List the planets of the solar system."


def _bin(name: str) -> str:
    from jazzmine.local import defaults

    return str(defaults.build_bin_dir() / name)


def measure(workers: list[str], repeat: int) -> dict[str, Any]:
    """Runs where the client is (loopback, or inside the client namespace)."""
    from jazzmine.local import LocalLLM, MessagePart

    prompt = [MessagePart("user", PROMPT_TEXT)]
    options: dict[str, Any] = {"seed": 1, "extra_args": ["--ignore-eos"], "n_ctx": 1024}
    if workers:
        options["rpc_servers"] = workers
    results: dict[str, Any] = {}
    per_call = LocalLLM(keep_alive=0, **options)
    one, sixty_four = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        per_call.generate(prompt, max_tokens=1)
        one.append(time.perf_counter() - started)
        started = time.perf_counter()
        per_call.generate(prompt, max_tokens=65)
        sixty_four.append(time.perf_counter() - started)
    median = sorted(one)[len(one) // 2]
    median64 = sorted(sixty_four)[len(sixty_four) // 2]
    results["per-call"] = {"load_s": median, "tokens_per_s": 64 / max(1e-6, median64 - median)}
    warm = LocalLLM(keep_alive=-1, **options)
    before_load = link_bytes()
    started = time.perf_counter()
    warm.generate(prompt, max_tokens=1)
    load = time.perf_counter() - started
    after_load = link_bytes()
    rates = []
    for _ in range(repeat):
        started = time.perf_counter()
        warm.generate(prompt, max_tokens=64)
        rates.append(64 / (time.perf_counter() - started))
    one_start = link_bytes()
    warm.generate(prompt, max_tokens=1)
    one_end = link_bytes()
    warm.generate(prompt, max_tokens=65)
    many_end = link_bytes()
    warm.close()
    results["warm"] = {"load_s": load, "tokens_per_s": sorted(rates)[len(rates) // 2]}
    if None not in (before_load, after_load, one_start, one_end, many_end):
        assert before_load is not None and after_load is not None and one_start is not None
        assert one_end is not None and many_end is not None
        results["warm"]["load_bytes"] = after_load - before_load
        results["warm"]["bytes_per_token"] = ((many_end - one_end) - (one_end - one_start)) / 64
    return results


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True)


@contextlib.contextmanager
def network(namespaced: bool) -> Iterator[None]:
    """Two namespaces joined by a veth pair (client | workers), removed afterwards."""
    if not namespaced:
        yield
        return
    for ns in (CLIENT_NS, WORKER_NS):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        _run("ip", "netns", "add", ns)
        _run("ip", "-n", ns, "link", "set", "lo", "up")
    try:
        _run(
            "ip",
            "link",
            "add",
            "jzb-c",
            "netns",
            CLIENT_NS,
            "type",
            "veth",
            "peer",
            "name",
            "jzb-w",
            "netns",
            WORKER_NS,
        )
        for ns, dev, address in ((CLIENT_NS, "jzb-c", CLIENT_IP), (WORKER_NS, "jzb-w", WORKER_IP)):
            _run("ip", "-n", ns, "addr", "add", f"{address}/30", "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")
        yield
    finally:
        for ns in (CLIENT_NS, WORKER_NS):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def link_bytes() -> int | None:
    """Bytes both ways on the client's veth end (inside the client namespace only)."""
    base = "/sys/class/net/jzb-c/statistics"
    try:
        with open(f"{base}/rx_bytes") as rx, open(f"{base}/tx_bytes") as tx:
            return int(rx.read()) + int(tx.read())
    except OSError:
        return None


@contextlib.contextmanager
def workers(count: int, namespaced: bool) -> Iterator[list[str]]:
    host = WORKER_IP if namespaced else "127.0.0.1"
    started, addresses = [], []
    try:
        for index in range(count):
            port = 50300 + index
            argv = [_bin("ggml-rpc-server"), "--host", host, "--port", str(port), "--threads", "1"]
            if namespaced:
                argv = ["ip", "netns", "exec", WORKER_NS, *argv]
            started.append(
                subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
            addresses.append(f"{host}:{port}")
        time.sleep(1.0)
        yield addresses
    finally:
        for process in started:
            process.kill()
            process.wait()


def run_client(addresses: list[str], repeat: int, namespaced: bool) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--inner", ",".join(addresses), "--repeat", str(repeat)]
    if namespaced:
        argv = ["ip", "netns", "exec", CLIENT_NS, *argv]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--inner", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner is not None:
        print(json.dumps(measure([a for a in args.inner.split(",") if a], args.repeat)))
        return
    results: dict[str, Any] = {"machine": machine(), "repeat": args.repeat, "rows": []}
    namespaces_ok = (
        os.geteuid() == 0
        and subprocess.run(["ip", "netns", "list"], capture_output=True).returncode == 0
    )
    links: list[tuple[str, bool]] = [("loopback", False)]
    if namespaces_ok:
        links.append(("veth between namespaces", True))
    for link, namespaced in links:
        with network(namespaced):
            for count in (0, 1, 2):
                if namespaced and count == 0:
                    continue  # no workers: nothing crosses the link
                with workers(count, namespaced) as addresses:
                    print(f"bench: {link}, {count} workers", file=sys.stderr, flush=True)
                    measured = run_client(addresses, args.repeat, namespaced)
                for mode, row in measured.items():
                    results["rows"].append({"link": link, "workers": count, "mode": mode, **row})
    lines = [
        f"# RPC workers ({results['machine']['date']})",
        "",
        machine_line(results["machine"]),
        "Each worker runs with 1 thread on the same 2-core machine as the client, so these",
        "figures show what the RPC path costs, not what more machines would add.",
        "Load: per-call, a 1-token call (model load + weights sent); warm, the first call",
        "(server start + weights sent once). Tokens/s: per-call, 64 tokens beyond the 1-token",
        "call; warm, a 64-token call on the loaded model. Medians of the repeats.",
        "",
        "| link | workers | mode | load s | tokens/s |",
        "|---|---:|---|---:|---:|",
    ]
    for row in results["rows"]:
        lines.append(
            f"| {row['link']} | {row['workers']} | {row['mode']} | {row['load_s']:.2f} "
            f"| {row['tokens_per_s']:.1f} |"
        )
    measured = [row for row in results["rows"] if "bytes_per_token" in row]
    if measured:
        lines += [
            "",
            "## What crosses the link (warm mode, bytes counted on the veth pair)",
            "",
            "`tc netem` is not available on this machine's kernel, so no delay was simulated;",
            "instead the bytes are counted and the time they take on faster links worked out",
            "(bandwidth only; each token also costs a few round trips of the link's latency).",
            "",
            "| workers | weights sent at load, MB | bytes per token | per token on 1 Gbit/s, ms "
            "| on 10 Gbit/s, ms | load on 1 Gbit/s, s | on 10 Gbit/s, s |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in measured:
            bits_token, bits_load = row["bytes_per_token"] * 8, row["load_bytes"] * 8
            megabytes, per_token = row["load_bytes"] / 1e6, row["bytes_per_token"]
            lines.append(
                f"| {row['workers']} | {megabytes:.1f} | {per_token:.0f} "
                f"| {bits_token / 1e9 * 1e3:.3f} | {bits_token / 1e10 * 1e3:.4f} "
                f"| {bits_load / 1e9:.2f} | {bits_load / 1e10:.3f} |"
            )
    if not namespaces_ok:
        lines += ["", "Network namespaces were not available: loopback only."]
    save("rpc", results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        socket.setdefaulttimeout(None)
        main()

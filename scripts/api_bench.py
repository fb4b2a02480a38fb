#!/usr/bin/env python3
"""Admin API load for scripts/bench: list latencies over a large fleet, or admin changes made while
devices run. Talks HTTPS with keep-alive to the admin port; standard library only.

  api_bench.py list   ADMIN_ADDR CERT PASSWORD_FILE [requests]
  api_bench.py change ADMIN_ADDR CERT PASSWORD_FILE SECONDS OUT_JSON
  api_bench.py check  ADMIN_ADDR CERT PASSWORD_FILE OUT_JSON
  api_bench.py lag    ADMIN_ADDR CERT PASSWORD_FILE SECONDS   (export lag samples every 0.2 s)
  api_bench.py syslog PORT OUT_COUNT_FILE                       (a TCP syslog receiver that counts)
"""
import http.client
import json
import ssl
import statistics
import sys
import time


def connect(addr, cert):
    host, port = addr.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=cert)
    ctx.check_hostname = False
    return http.client.HTTPSConnection(host, int(port), context=ctx, timeout=30)


class Api:
    def __init__(self, addr, cert, password_file):
        self.conn = connect(addr, cert)
        password = open(password_file).read().strip()
        self.token = None
        body = self.call("POST", "/login", {"name": "admin", "password": password})
        self.token = body["token"]

    def call(self, method, path, body=None):
        headers = {}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        self.conn.request(method, "/api/v1" + path, body=data, headers=headers)
        response = self.conn.getresponse()
        text = response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: {response.status} {text[:200]!r}")
        return json.loads(text)


def percentile(samples, p):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def timed(api, path, n):
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        body = api.call("GET", path)
        samples.append((time.perf_counter() - start) * 1000)
        assert body["count"] <= body["limit"]
    return samples


def list_bench(addr, cert, password_file, n):
    api = Api(addr, cert, password_file)
    total = api.call("GET", "/devices?limit=1")["total_count"]
    last = api.call("GET", f"/devices?limit=1&offset={total - 1}")["list"][0]["id"]
    cases = [
        ("first page, unfiltered", "/devices?limit=100"),
        ("page of a group (1 of 10)", "/devices?group_id=5&limit=100"),
        ("deep offset (90%)", f"/devices?limit=100&offset={total * 9 // 10}"),
        ("cursor (after_id at 90%)", f"/devices?limit=100&after_id={last * 9 // 10}"),
        ("never seen, deep in a group", "/devices?group_id=7&status=never_seen&limit=100&offset=50000"),
    ]
    print(f"fleet: {total} devices; {n} requests per case, one keep-alive connection")
    print(f"{'case':40} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    report = {}
    for name, path in cases:
        timed(api, path, 5)  # warm
        samples = timed(api, path, n)
        report[name] = {"p50": statistics.median(samples), "p99": percentile(samples, 99)}
        print(f"{name:40} {statistics.median(samples):8.1f} {percentile(samples, 99):8.1f} {max(samples):8.1f}")
    return report


def change_load(addr, cert, password_file, seconds, out):
    """Moves devices between two groups with different locked policy values and edits the policy,
    a few changes a second, and records what it changed and when."""
    api = Api(addr, cert, password_file)
    groups = {}
    for name in ("Bench A", "Bench B"):
        found = [g for g in api.call("GET", "/groups?limit=1000")["list"] if g["name"] == name]
        groups[name] = found[0]["id"] if found else api.call("POST", "/groups", {"parent_id": 1, "name": name})["id"]
    rows = {}
    for name, gid in groups.items():
        row = api.call("POST", f"/groups/{gid}/policy",
                       {"path": "Bench/Level", "value": {"type": "int", "value": 1}, "locked": 1})
        rows[name] = row["id"]
    devices = [d["device_id"] for d in api.call("GET", "/devices?limit=1000")["list"]]
    moves, edits, n = [], 0, 0
    deadline = time.time() + seconds
    while time.time() < deadline:
        device = devices[n % len(devices)]
        target = "Bench A" if n % 2 == 0 else "Bench B"
        api.call("PUT", f"/devices/{device}", {"group_id": groups[target]})
        moves.append({"device_id": device, "group_id": groups[target], "at": time.time()})
        if n % 5 == 0:
            for name, gid in groups.items():
                api.call("PUT", f"/groups/{gid}/policy/{rows[name]}",
                         {"path": "Bench/Level", "value": {"type": "int", "value": n}, "locked": 1})
                edits += 1
        n += 1
        time.sleep(0.1)
    last_edit = time.time()
    json.dump({"moves": moves, "edits": edits, "last_edit": last_edit}, open(out, "w"))
    print(f"admin changes: {len(moves)} device moves, {edits} policy edits in {seconds} s")


def check_reached(addr, cert, password_file, out):
    """Every moved device holds its group's current policy (it synced after the last change)."""
    api = Api(addr, cert, password_file)
    done = json.load(open(out))
    moved = sorted({move["device_id"] for move in done["moves"]})
    stale = [d for d in moved if api.call("GET", f"/devices/{d}/sync")["policy_current"] != 1]
    print(f"moved devices: {len(moved)}; holding their group's current policy: {len(moved) - len(stale)}")
    return stale


def lag(addr, cert, password_file, seconds):
    """Samples every sink's export lag during a run; prints p50/p99/max per sink."""
    api = Api(addr, cert, password_file)
    samples = {}
    deadline = time.time() + seconds
    while time.time() < deadline:
        for sink in api.call("GET", "/export/sinks")["list"]:
            samples.setdefault(sink["name"], []).append((sink["lag_seconds"], sink["lag_entries"]))
        time.sleep(0.2)
    for name, values in samples.items():
        secs = [v[0] for v in values]
        entries = [v[1] for v in values]
        print(f"export lag {name}: p50 {statistics.median(secs):.2f} s, p99 {percentile(secs, 99):.2f} s, "
              f"max {max(secs):.2f} s; entries behind p99 {percentile(entries, 99)} ({len(values)} samples)")


def syslog_receiver(port, out):
    """Counts octet-counted syslog frames on a TCP port until killed; writes the count every 0.5 s."""
    import socket
    import threading
    count = [0]
    lock = threading.Lock()

    def serve(conn):
        # Frames are walked by offset and the buffer cut once per read: slicing it per frame
        # copied the rest of the buffer each time and made this receiver the bottleneck.
        buf = b""
        while True:
            data = conn.recv(262144)
            if not data:
                return
            buf += data
            pos, frames = 0, 0
            while True:
                space = buf.find(b" ", pos)
                if space < 0:
                    break
                end = space + 1 + int(buf[pos:space])
                if len(buf) < end:
                    break
                pos, frames = end, frames + 1
            buf = buf[pos:]
            with lock:
                count[0] += frames

    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", int(port)))
    server.listen()

    def report():
        while True:
            time.sleep(0.5)
            with lock:
                open(out, "w").write(str(count[0]))

    threading.Thread(target=report, daemon=True).start()
    while True:
        conn, _ = server.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    if sys.argv[1] == "syslog":
        syslog_receiver(sys.argv[2], sys.argv[3])
        sys.exit(0)
    mode, addr, cert, password_file = sys.argv[1:5]
    if mode == "list":
        list_bench(addr, cert, password_file, int(sys.argv[5]) if len(sys.argv) > 5 else 300)
    elif mode == "change":
        change_load(addr, cert, password_file, float(sys.argv[5]), sys.argv[6])
    elif mode == "check":
        sys.exit(1 if check_reached(addr, cert, password_file, sys.argv[5]) else 0)
    elif mode == "lag":
        lag(addr, cert, password_file, float(sys.argv[5]))

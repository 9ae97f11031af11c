#!/usr/bin/env python3
"""Usage: benches/cpu-during.py SERVER_PID COMMAND...

Runs COMMAND and says where the machine's time went while it ran: the wall time; the CPU
seconds of COMMAND (with its children) and of the server process SERVER_PID (all its
threads, from /proc/PID/stat); the bytes the server read from and wrote to the block layer
(/proc/PID/io: a tmpfs data directory shows none); and the whole machine's busy, iowait and
idle shares of all its cores (/proc/stat), so one can tell a CPU-bound server from a
disk-bound one or from a machine busy with other work.
"""
import os
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def proc_io(pid):
    out = {}
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            k, v = line.split(":")
            out[k] = int(v)
    return out["read_bytes"], out["write_bytes"]


def machine():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle, iowait = v[3], v[4]
    return sum(v[:8]), idle, iowait


def main():
    pid = int(sys.argv[1])
    cmd = sys.argv[2:]
    s_cpu, s_io, m0 = proc_cpu(pid), proc_io(pid), machine()
    t0 = time.monotonic()
    child = subprocess.Popen(cmd)
    peak, last_cpu, last_t = 0.0, s_cpu, t0
    while child.poll() is None:
        time.sleep(0.2)
        now, c = time.monotonic(), proc_cpu(pid)
        peak = max(peak, (c - last_cpu) / (now - last_t))
        last_cpu, last_t = c, now
    wall = time.monotonic() - t0
    ct = os.times()
    e_cpu, e_io, m1 = proc_cpu(pid), proc_io(pid), machine()
    total = m1[0] - m0[0]
    print(
        f"wall {wall:.2f} s | command CPU {ct.children_user + ct.children_system:.2f} s | "
        f"server CPU {e_cpu - s_cpu:.2f} s ({(e_cpu - s_cpu) / wall:.2f} cores on average, "
        f"{peak:.2f} at most over 0.2 s) | server disk read {(e_io[0] - s_io[0]) / 2**20:.0f} MiB, "
        f"written {(e_io[1] - s_io[1]) / 2**20:.0f} MiB | machine busy "
        f"{(total - (m1[1] - m0[1]) - (m1[2] - m0[2])) / total:.0%}, iowait "
        f"{(m1[2] - m0[2]) / total:.0%}, idle {(m1[1] - m0[1]) / total:.0%} of "
        f"{os.cpu_count()} cores",
        file=sys.stderr,
    )
    sys.exit(child.returncode)


if __name__ == "__main__":
    main()

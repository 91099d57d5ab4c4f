#!/usr/bin/env bash
# gpu-check.sh — check the GPU source on a real NVIDIA GPU.
#
# Runs the joules-agent binary given (built elsewhere; no Go needed here) at a
# 100 ms NVML interval, idles, then runs a known bf16 matrix-multiply load in
# PyTorch on GPU 0 while scraping the agent, and prints one table: idle and
# loaded power, the energy counter's delta against the integral of power,
# achieved TFLOP/s and TFLOP per joule, the agent's CPU time and RSS, and the
# latency of one full NVML pass.
#
# It fails (exit 1, saying why) when
#   - GPU 0's energy counter delta and the integral of its power differ by
#     more than 2 % over the load (its first 2 s left out: NVML's power is a
#     one-second average, which lags a step the counter does not), or
#   - an NVML pass is over its budget: p99 of the passes ≤ 5 ms
#     (PASS_BUDGET_MS). The agent's design budget is 0.5 % of one core at
#     its 1 s interval, 5 ms a second for everything it does; a pass slower
#     than that alone breaks it, or
#   - on a real GPU, the load could not run (PyTorch with CUDA is needed).
# With SIMULATE set no load runs (the GPUs are simulated): the counter is
# compared with the integral over the whole run, where the simulated load
# model moves the power.
#
# It changes no GPU setting: no clocks, power limits, persistence or MIG
# mode, no reset. It finishes within about 2 minutes (limit 10).
#
# usage: scripts/gpu-check.sh [path/to/joules-agent] [load seconds]
# SIMULATE=dgxh200 runs it against simulated GPUs, to check the script itself.
set -euo pipefail
AGENT=${1:-bin/joules-agent}
LOAD_SECONDS=${2:-45}
IDLE_SECONDS=${IDLE_SECONDS:-10}
PASS_BUDGET_MS=${PASS_BUDGET_MS:-5}
PORT=${PORT:-19660}
WORK=$(mktemp -d)
trap 'kill "${AGENT_PID:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

command -v python3 >/dev/null || { echo "gpu-check: python3 is needed" >&2; exit 1; }
[ -x "$AGENT" ] || { echo "gpu-check: no agent binary at $AGENT (make build)" >&2; exit 1; }

cat > "$WORK/agent.yml" <<YAML
labels: {host: gpu-check}
sources:
  node: {enabled: false}
  nvml: {interval: 100ms, processes: true, simulate: "${SIMULATE:-}"}
YAML
"$AGENT" --config.file "$WORK/agent.yml" --web.listen-address "127.0.0.1:$PORT" --log.level warn 2> "$WORK/agent.log" &
AGENT_PID=$!

cat > "$WORK/check.py" <<'PY'
import os, re, statistics, subprocess, sys, threading, time, urllib.request

port, idle_s, load_s, pid, work = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
budget_ms, simulated = float(sys.argv[6]), sys.argv[7]
url = f"http://127.0.0.1:{port}/metrics"
line = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')

def scrape():
    out = {}
    for l in urllib.request.urlopen(url, timeout=2).read().decode().splitlines():
        m = line.match(l)
        if m:
            out.setdefault(m.group(1), []).append((m.group(2) or "", float(m.group(3))))
    return out

def pick(s, name, *want):
    for labels, v in s.get(name, []):
        if all(w in labels for w in want):
            return v
    return None

def cpu_seconds():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

def rss_mib():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"):
            return int(l.split()[1]) / 1024

for _ in range(100):
    try:
        s = scrape()
        if pick(s, "joules_gpu_power_watts", 'gpu="0"') is not None:
            break
    except Exception:
        pass
    time.sleep(0.1)
else:
    sys.exit("gpu-check: the agent never reported GPU 0; see its log")

# One row per scrape: (scrape time, power W, energy J, pass seconds, pass
# time). The pass time (the NVML source's last success) dates the readings
# better than the scrape does, and tells one pass from the next.
samples = []
stop = threading.Event()
def poll():
    while not stop.is_set():
        try:
            s = scrape()
            samples.append((time.time(), pick(s, "joules_gpu_power_watts", 'gpu="0"'),
                            pick(s, "joules_gpu_energy_joules_total", 'gpu="0"', 'method="counter"'),
                            pick(s, "joules_source_duration_seconds", 'source="nvml"'),
                            pick(s, "joules_source_last_success_timestamp_seconds", 'source="nvml"')))
        except Exception:
            pass  # a missed scrape is a missed row, not a failed check
        time.sleep(0.1)
t = threading.Thread(target=poll); t.start()
cpu0, t0 = cpu_seconds(), time.time()
time.sleep(idle_s)
idle_end = time.time()

load = r'''
import sys, time, torch
n, secs = 8192, float(sys.argv[1])
a = torch.randn(n, n, device="cuda:0", dtype=torch.bfloat16)
b = torch.randn(n, n, device="cuda:0", dtype=torch.bfloat16)
for _ in range(5): a @ b
torch.cuda.synchronize()
iters, start = 0, time.time()
while time.time() - start < secs:
    for _ in range(20): a @ b
    iters += 20
    torch.cuda.synchronize()
el = time.time() - start
print(f"{iters * 2 * n**3} {start} {start + el}")
'''
res = None
if simulated:
    time.sleep(load_s)  # the simulated load model moves on its own
else:
    res = subprocess.run([sys.executable, "-c", load, str(load_s)], capture_output=True, text=True)
time.sleep(2)
stop.set(); t.join()
cpu1, t1 = cpu_seconds(), time.time()

def passes(a, b):
    """The distinct NVML passes made between a and b, oldest first."""
    seen, out = set(), []
    for _, p, e, d, at in samples:
        if None in (p, e, at) or not a <= at <= b or at in seen:
            continue
        seen.add(at)
        out.append((at, p, e, d))
    return sorted(out)

failures = []
idle = passes(t0 + 1, idle_end)
last = scrape()
model = re.search(r'model="([^"]*)"', next(l for l, _ in last["joules_gpu_up"] if 'gpu="0"' in l)).group(1)
driver = re.search(r'driver_version="([^"]*)"', last["joules_nvml_info"][0][0]).group(1)
rows = [("GPU 0, driver", f"{model}, {driver}" + (f" (simulated: {simulated})" if simulated else ""))]
rows.append(("idle power (mean, W)", f"{statistics.mean(x[1] for x in idle):.1f}" if idle else "no passes"))
flops = None
if res is not None and res.returncode == 0:
    flops, ls, le = (float(x) for x in res.stdout.split())
    settle = 2 if le - ls > 6 else 0  # NVML's one-second power average catches up with the step
    window, what = passes(ls + settle, le), "the load"
    rows.append(("loaded power (mean, W)", f"{statistics.mean(x[1] for x in window):.1f}" if window else "no passes"))
else:
    window, what = passes(t0 + 1, t1), "the whole run"
    if res is None:
        rows.append(("load", "none: simulated GPUs"))
    else:
        err = res.stderr.strip().splitlines()
        why = err[-1][:80] if err else f"exit status {res.returncode}"
        rows.append(("load", "PyTorch with CUDA not available: " + why))
        failures.append(f"the load did not run ({why}); the check needs PyTorch with CUDA (pip install torch)")
if len(window) >= 10:
    integral = sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in zip(window, window[1:]))
    counter = window[-1][2] - window[0][2]
    dev = 100 * (counter - integral) / integral
    rows += [(f"energy counter delta over {what} (J)", f"{counter:.1f}"),
             ("integral of power (J)", f"{integral:.1f}"),
             ("counter vs integral (limit ±2 %)", f"{dev:+.2f} %")]
    if abs(dev) > 2:
        failures.append(f"the energy counter's delta ({counter:.1f} J) and the integral of power ({integral:.1f} J) over {what} differ by {dev:+.2f} %, more than 2 %")
    if flops is not None:
        rows += [("bf16 matmul TFLOP/s", f"{flops / (le - ls) / 1e12:.1f}"),
                 ("TFLOP per joule (counter)", f"{flops / 1e12 / counter:.3f}")]
else:
    failures.append(f"only {len(window)} NVML passes over {what}: too few to compare the counter with the integral of power")
durations = sorted(x[3] for x in passes(t0, t1) if x[3] is not None)
rows += [("agent CPU (% of one core)", f"{100 * (cpu1 - cpu0) / (t1 - t0):.2f}"),
         ("agent RSS (MiB)", f"{rss_mib():.1f}")]
if durations:
    p50, p99 = 1000 * durations[len(durations) // 2], 1000 * durations[min(len(durations) - 1, int(len(durations) * 0.99))]
    rows.append((f"NVML pass p50 / p99 (ms, budget p99 ≤ {budget_ms:g})", f"{p50:.2f} / {p99:.2f}"))
    if p99 > budget_ms:
        failures.append(f"NVML pass p99 is {p99:.2f} ms, over its {budget_ms:g} ms budget (p50 {p50:.2f} ms, {len(durations)} passes)")
else:
    failures.append("no NVML pass reported its duration")
rows += [("NVML passes", str(len(durations))), ("scrapes", str(len(samples))),
         ("verdict", "FAIL" if failures else "pass")]
w = max(len(r[0]) for r in rows)
print(f"| {'gpu-check ' + time.strftime('%Y-%m-%d'):<{w}} | value |\n|{'-' * (w + 2)}|-------|")
for k, v in rows:
    print(f"| {k:<{w}} | {v} |")
for f in failures:
    print(f"gpu-check: FAIL: {f}", file=sys.stderr)
sys.exit(1 if failures else 0)
PY
python3 "$WORK/check.py" "$PORT" "$IDLE_SECONDS" "$LOAD_SECONDS" "$AGENT_PID" "$WORK" "$PASS_BUDGET_MS" "${SIMULATE:-}"

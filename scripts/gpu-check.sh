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
# It changes no GPU setting: no clocks, power limits, persistence or MIG
# mode, no reset. It finishes within about 2 minutes (limit 10).
#
# usage: scripts/gpu-check.sh [path/to/joules-agent] [load seconds]
# SIMULATE=dgxh200 runs it against simulated GPUs, to check the script itself.
set -euo pipefail
AGENT=${1:-bin/joules-agent}
LOAD_SECONDS=${2:-45}
IDLE_SECONDS=${IDLE_SECONDS:-10}
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
import json, os, re, statistics, subprocess, sys, threading, time, urllib.request

port, idle_s, load_s, pid, work = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
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

samples = []  # (t, power W, energy J, pass seconds)
stop = threading.Event()
def poll():
    while not stop.is_set():
        s = scrape()
        samples.append((time.time(), pick(s, "joules_gpu_power_watts", 'gpu="0"'),
                        pick(s, "joules_gpu_energy_joules_total", 'gpu="0"'),
                        pick(s, "joules_source_duration_seconds", 'source="nvml"')))
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
res = subprocess.run([sys.executable, "-c", load, str(load_s)], capture_output=True, text=True)
time.sleep(2)
stop.set(); t.join()
cpu1, t1 = cpu_seconds(), time.time()

def window(a, b):
    return [x for x in samples if a <= x[0] <= b and x[1] is not None and x[2] is not None]

idle = window(t0 + 1, idle_end)
last = scrape()
model = re.search(r'model="([^"]*)"', next(l for l, _ in last["joules_gpu_up"] if 'gpu="0"' in l)).group(1)
driver = re.search(r'driver_version="([^"]*)"', last["joules_nvml_info"][0][0]).group(1)
rows = [("GPU 0, driver", f"{model}, {driver}")]
rows.append(("idle power (mean, W)", f"{statistics.mean(x[1] for x in idle):.1f}"))
if res.returncode == 0:
    flops, ls, le = res.stdout.split()
    flops, ls, le = float(flops), float(ls), float(le)
    loaded = window(ls, le)
    integral = sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in zip(loaded, loaded[1:]))
    counter = loaded[-1][2] - loaded[0][2]
    rows += [("loaded power (mean, W)", f"{statistics.mean(x[1] for x in loaded):.1f}"),
             ("energy counter delta (J)", f"{counter:.1f}"),
             ("integral of power (J)", f"{integral:.1f}"),
             ("counter vs integral", f"{100 * (counter - integral) / integral:+.2f} %"),
             ("bf16 matmul TFLOP/s", f"{flops / (le - ls) / 1e12:.1f}"),
             ("TFLOP per joule (counter)", f"{flops / 1e12 / counter:.3f}")]
else:
    rows.append(("load", "PyTorch with CUDA not available: " + res.stderr.strip().splitlines()[-1][:80] if res.stderr.strip() else "failed"))
passes = sorted(x[3] for x in samples if x[3] is not None)
rows += [("agent CPU (% of one core)", f"{100 * (cpu1 - cpu0) / (t1 - t0):.2f}"),
         ("agent RSS (MiB)", f"{rss_mib():.1f}"),
         ("NVML pass p50 / p99 (ms)", f"{1000 * passes[len(passes) // 2]:.2f} / {1000 * passes[int(len(passes) * 0.99)]:.2f}"),
         ("scrapes", str(len(samples)))]
w = max(len(r[0]) for r in rows)
print(f"| {'gpu-check ' + time.strftime('%Y-%m-%d'):<{w}} | value |\n|{'-' * (w + 2)}|-------|")
for k, v in rows:
    print(f"| {k:<{w}} | {v} |")
PY
python3 "$WORK/check.py" "$PORT" "$IDLE_SECONDS" "$LOAD_SECONDS" "$AGENT_PID" "$WORK"

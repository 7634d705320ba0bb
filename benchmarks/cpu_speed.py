"""rnnlab vs torch.nn on the CPU: speed, achieved GFLOP/s, training-step memory, streaming.

    .venv/bin/python benchmarks/cpu_speed.py            # full grid, median of 5
    .venv/bin/python benchmarks/cpu_speed.py --repeats 9 --under-load
    .venv/bin/python benchmarks/cpu_speed.py --variants all --name cpu-avx2

Both libraries run in the same process with the same weights, interleaved (rnnlab,
torch, rnnlab, torch, ... with the order alternating each round), after one warm-up
call each; every figure is a median over ``--repeats`` rounds. Inference is a forward
pass under ``torch.no_grad()``; training is forward + backward of ``output.sum()``.
GFLOP/s counts the matrix products only (input projection and recurrence, 3x forward
for training) and stands next to a measured 2048³ GEMM. Peak memory of a training step
is measured in a child process two ways: the peak of the bytes held in tensors (torch's
CPU allocator, as the profiler records it: the comparison that counts, see
:func:`tensor_peak_mib`) and the rise of the peak RSS (glibc serving large blocks by
mmap, so freed memory is returned and the peak is per step; the speed figures come from
the parent, with glibc's defaults). The RSS undercounts torch.nn's per-step tensors:
blocks under the mmap threshold reuse heap memory an earlier step freed, so they never
raise the RSS (torch's GRU at B16 H256: 12 MiB by RSS, 34 MiB in tensors). Streaming is
the latency of one step at batch size 1: ``rnnlab.nn.Stream.step`` vs calling the
torch.nn cell. ``--under-load`` repeats a few points while a busy process holds a core.
``--compile`` adds rnnlab's layer eager against the same layer under
``torch.compile(fullgraph=True)``, training and inference, at two grid points (rows named
"compile CELL CONFIG", so ``--compile --only compile`` runs only them). Streaming runs
with the whole grid, or with ``--only`` and ``--streaming`` (``--only stream --streaming``:
streaming alone, as no grid point is named "stream"). Every results file records the load
average at its end.

The cpu backend's per-step product has one kernel variant per instruction set
(``RNNLAB_CPU_ISA``: avx512, avx2, portable). The results name the CPU, its vector
features and the variant that ran; ``--variants avx2,portable`` (or ``all``: every
variant this CPU runs) times each point with each variant, interleaved in the same
rounds as torch, and writes one table per variant.

Writes benchmarks/results/<name>.json and <name>.md (``--name``, default ``cpu``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

_MMAP_ENV = "MALLOC_MMAP_THRESHOLD_"
_TRIM_ENV = "MALLOC_TRIM_THRESHOLD_"
_MEMORY_FLAG = "--memory-of"
if __name__ == "__main__" and _MEMORY_FLAG in sys.argv and os.environ.get(_MMAP_ENV) is None:
    # The memory child: serve every block >= 64 KiB by mmap and give the heap's free top
    # back at once, so that freed tensors leave the RSS and the peak RSS of one step
    # measures that step's own memory (without the trim, the many small per-step tensors
    # of torch.nn's packed path stayed resident after the warm-up step and a step's rise
    # missed them). Set before start-up, and only here: the speed figures come from a
    # process with glibc's defaults, where these settings add page faults to every buffer.
    os.environ[_MMAP_ENV] = "65536"
    os.environ[_TRIM_ENV] = "0"
    os.execv(sys.executable, [sys.executable, *sys.argv])

import llvmlite.binding as llvm  # noqa: E402
import torch  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence  # noqa: E402

import rnnlab  # noqa: E402
import rnnlab.nn as rnn  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CELLS = ("RNN", "LSTM", "GRU")
GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}


@dataclass(frozen=True)
class Config:
    name: str
    B: int
    T: int
    I: int
    H: int
    layers: int = 1
    bidirectional: bool = False
    packed: bool = False
    proj: int = 0
    cells: tuple[str, ...] = CELLS


GRID = (
    Config("B1 T1000 I64 H128", 1, 1000, 64, 128),
    Config("B16 T200 I128 H256", 16, 200, 128, 256),
    Config("B64 T100 I256 H512", 64, 100, 256, 512),
    Config("2-layer bidir B8 T200 I64 H128", 8, 200, 64, 128, layers=2, bidirectional=True),
    Config("packed B16 T200 I128 H256", 16, 200, 128, 256, packed=True),
    Config("LSTM proj64 B16 T200 I128 H256", 16, 200, 128, 256, proj=64, cells=("LSTM",)),
    # Widths that are not powers of two (issue #15's shapes, from an AVX2 machine).
    Config("B1 T700 I48 H112", 1, 700, 48, 112, cells=("LSTM", "GRU")),
    Config("B12 T250 I96 H192", 12, 250, 96, 192, cells=("LSTM", "GRU")),
    Config("B40 T100 I256 H448", 40, 100, 256, 448, cells=("LSTM", "GRU")),
    Config("2-layer bidir B6 T150 I64 H128", 6, 150, 64, 128, layers=2, bidirectional=True,
           cells=("LSTM", "GRU")),
    Config("B32 T120 I200 H384", 32, 120, 200, 384, cells=("LSTM", "GRU")),
    # Widths not multiples of 16 (GRU 3H = 300, H = 100; LSTM backward P = 100): the tiles'
    # padded last panel, where MKL's packed sgemm ran before issue #15.
    Config("B16 T200 I100 H100", 16, 200, 100, 100, cells=("LSTM", "GRU")),
)
STREAM_SIZES = (64, 256)
COMPILE_GRID = (GRID[1], GRID[3])


@dataclass
class Point:
    cell: str
    config: str
    mode: str  # "inference" or "training"
    rnnlab_ms: float
    torch_ms: float
    ratio: float  # torch / rnnlab: > 1 means rnnlab is faster
    rnnlab_gflops: float
    torch_gflops: float
    rnnlab_runs_ms: list[float] = field(default_factory=list)
    torch_runs_ms: list[float] = field(default_factory=list)
    variant: str = "automatic"  # the cpu backend's kernel variant


# ---------------------------------------------------------------------------- timing


def interleaved_all(fns: list[Callable[[], object]], repeats: int) -> list[list[float]]:
    """Seconds of every run of each function, run in turn (the order rotated and flipped
    from round to round), after one warm-up call each."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for k in range(repeats):
        order = [(k + i) % len(fns) for i in range(len(fns))]
        for i in order if k % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            fns[i]()
            times[i].append(time.perf_counter() - start)
    return times


def interleaved(a: Callable[[], object], b: Callable[[], object], repeats: int):
    """Median seconds of a and b, run alternately (order flipped every round)."""
    ta, tb = interleaved_all([a, b], repeats)
    return statistics.median(ta), statistics.median(tb), ta, tb


def gemm_peak(repeats: int) -> float:
    """GFLOP/s of a 2048³ float32 matmul with torch: the best of ``repeats`` runs (a peak
    is what the machine can do; on a shared machine the median measures the neighbours)."""
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(max(repeats, 5)):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times) / 1e9


def matmul_flops(cell: str, cfg: Config) -> float:
    """Multiply-add FLOPs of one forward pass: input projection + recurrence, all layers."""
    G = GATES[cell] * cfg.H
    P = cfg.proj or cfg.H
    D = 2 if cfg.bidirectional else 1
    steps = cfg.B * cfg.T
    if cfg.packed:
        steps = int(sum(_lengths(cfg)))
    total = 0.0
    for layer in range(cfg.layers):
        inp = cfg.I if layer == 0 else D * P
        per_step = 2 * G * (inp + P) + (2 * cfg.H * P if cfg.proj else 0)
        total += D * steps * per_step
    return total


# ---------------------------------------------------------------------------- machine


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what the platform says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "Model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def vector_features() -> list[str]:
    """The host's SIMD features as LLVM names them (AVX*, FMA, SSE4.2, NEON, SVE)."""
    features = llvm.get_host_cpu_features()
    return sorted(f for f, on in features.items()
                  if on and (f.startswith(("avx", "sve")) or f in ("fma", "sse4.2", "neon")))


def kernel_variants(asked: str | None) -> list[str]:
    """The cpu backend's kernel variants to time: the names in ``asked`` (comma-separated,
    or ``all``: every one this CPU runs), else [] (the automatic choice only)."""
    if not asked:
        return []
    from rnnlab.backends.cpu import _isa

    if asked == "all":
        return [isa.name for isa in _isa.runnable()]
    names = [n.strip() for n in asked.split(",") if n.strip()]
    for name in names:
        _isa.resolve(name)  # an unknown or unrunnable variant: IsaError, before any work
    return names


def with_variant(fn: Callable[[], object], variant: str | None) -> Callable[[], object]:
    """``fn`` run with the cpu backend's kernel ``variant`` (None: as configured)."""
    if variant is None:
        return fn
    from rnnlab.backends.cpu import _isa

    def run():
        with _isa.use_isa(variant):
            return fn()

    return run


def active_variant() -> str:
    """The kernel variant the cpu backend runs by itself here ("n/a" before variants)."""
    with contextlib.suppress(ImportError):
        from rnnlab.backends.cpu import _isa

        return _isa.active().name
    return "n/a"


# ---------------------------------------------------------------------------- models


def _lengths(cfg: Config) -> list[int]:
    g = torch.Generator().manual_seed(0)
    return torch.randint(cfg.T // 4, cfg.T + 1, (cfg.B,), generator=g).tolist()


def make_pair(cell: str, cfg: Config):
    """A torch.nn layer and an rnnlab layer with the same weights, and their input."""
    kwargs = {"num_layers": cfg.layers, "bidirectional": cfg.bidirectional}
    if cfg.proj:
        kwargs["proj_size"] = cfg.proj
    torch.manual_seed(0)
    ref = getattr(torch.nn, cell)(cfg.I, cfg.H, **kwargs)
    ours = getattr(rnn, cell)(cfg.I, cfg.H, **kwargs)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(cfg.T, cfg.B, cfg.I)
    if cfg.packed:
        x = pack_padded_sequence(x, torch.tensor(_lengths(cfg)), enforce_sorted=False)
    return ref, ours, x


def _output_sum(out) -> torch.Tensor:
    return (out.data if hasattr(out, "batch_sizes") else out).sum()


def inference(model, x) -> Callable[[], object]:
    def run():
        with torch.no_grad():
            return model(x)

    return run


def training(model, x) -> Callable[[], object]:
    params = list(model.parameters())

    def run():
        for p in params:
            p.grad = None
        out, _ = model(x)
        _output_sum(out).backward()

    return run


# ---------------------------------------------------------------------------- memory


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def step_peak_mib(step: Callable[[], object], warm: int = 2, rounds: int = 3) -> float | None:
    """Rise of peak RSS over one call of ``step`` (MiB), the smallest of ``rounds`` after
    ``warm`` calls (the first calls also pay one-time costs: code, thread stacks, caches);
    None where Linux cannot reset the peak."""
    for _ in range(warm):
        step()
    rises = []
    for _ in range(rounds):
        gc.collect()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
        except OSError:
            return None
        before = _status_kib("VmRSS")
        step()
        rises.append((_status_kib("VmHWM") - before) / 1024)
    return min(rises)


def tensor_peak_mib(step: Callable[[], object], warm: int = 2) -> float:
    """Peak of the bytes held in tensors during one call of ``step`` (MiB), after ``warm``
    calls: every allocation and free of torch's CPU allocator the profiler records in the
    call, summed in time order (what was allocated before the call is not counted). Unlike
    the RSS, this sees a tensor that reuses memory the heap kept from an earlier step;
    it misses memory allocated outside torch (Numba's per-call scratch in rnnlab, O(B·H))."""
    for _ in range(warm):
        step()
    gc.collect()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                profile_memory=True) as prof:
        step()
    with tempfile.TemporaryDirectory() as folder:
        trace = Path(folder) / "trace.json"
        prof.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text())["traceEvents"]
    held = peak = 0
    for e in sorted((e for e in events if e.get("name") == "[memory]"), key=lambda e: e["ts"]):
        held += e["args"]["Bytes"]
        peak = max(peak, held)
    return peak / 2**20


def memory_in_child(cell: str, config: str) -> dict:
    """Training-step peak memory of both libraries, measured in a fresh child process."""
    done = subprocess.run(
        [sys.executable, __file__, _MEMORY_FLAG, f"{cell}|{config}"], capture_output=True,
        text=True, check=True, timeout=600,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_child(point: str) -> None:
    """Print {"rnnlab_mib", "torch_mib"} for one 'CELL|CONFIG' point (the child's job)."""
    cell, config = point.split("|", 1)
    (cfg,) = [c for c in GRID if c.name == config]
    ref, ours, x = make_pair(cell, cfg)
    print(json.dumps({"rnnlab_mib": step_peak_mib(training(ours, x)),
                      "torch_mib": step_peak_mib(training(ref, x)),
                      "rnnlab_tensor_mib": tensor_peak_mib(training(ours, x)),
                      "torch_tensor_mib": tensor_peak_mib(training(ref, x))}))


def memory_run(only: list[str] | None) -> dict:
    """Only the training-step peak memory, every grid point (or those ``only`` names)."""
    memory = []
    for cfg in GRID:
        for cell in cfg.cells:
            if only and not any(o in f"{cell} {cfg.name}" for o in only):
                continue
            memory.append({"cell": cell, "config": cfg.name, **memory_in_child(cell, cfg.name)})
            print(f"{cell:5s} {cfg.name:32s} training-step peak memory: rnnlab "
                  f"{memory[-1]['rnnlab_mib']:.1f} MiB, torch {memory[-1]['torch_mib']:.1f} MiB",
                  flush=True)
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": {"cpu_model": cpu_model(), "vector_features": vector_features(),
                        "cpu_count": os.cpu_count(), "torch": torch.__version__,
                        "rnnlab": rnnlab.__version__},
            "memory": memory, "load_average": os.getloadavg()}


MEMORY_HEAD = ("| cell | configuration | rnnlab MiB (tensors) | torch MiB (tensors) | "
               "rnnlab MiB (RSS rise) | torch MiB (RSS rise) |")


def memory_cells(r: dict) -> list[str]:
    """One row's four figures (tensor peaks, then RSS rises; n/a where not measured)."""
    keys = ("rnnlab_tensor_mib", "torch_tensor_mib", "rnnlab_mib", "torch_mib")
    return ["n/a" if r.get(k) is None else f"{r[k]:.1f}" for k in keys]


def memory_markdown(result: dict) -> str:
    """The memory table; with ``result["before"]`` (an earlier ``--memory-only`` run),
    that run's rnnlab figure next to this one's."""
    m = result["machine"]
    before = result.get("before")
    earlier = {(r["cell"], r["config"]): r for r in (before or {}).get("memory", [])}
    lines = ["# Training-step peak memory, rnnlab vs torch.nn (CPU)", "",
             f"{result['date']}; {m['cpu_model']}, vector features: "
             f"{' '.join(m['vector_features'])}; {m['cpu_count']} CPUs; torch {m['torch']}.",
             "One training step (forward + backward of `output.sum()`) after two warm-up "
             "steps, in a child process per point: the peak of the bytes held in tensors "
             "(torch's CPU allocator; the comparison that counts) and the rise of the peak "
             "RSS, the smallest of three (it misses tensors that reuse heap memory freed by "
             "an earlier step, which flatters torch.nn's many small per-step tensors; see "
             "the module docstring)."
             + (" Load average at the end (1, 5, 15 min): "
                + ", ".join(f"{v:.2f}" for v in result["load_average"]) + "."
                if result.get("load_average") else ""), ""]
    if before:
        lines += [f"Before: {before['label']} ({before['date']}).", "",
                  MEMORY_HEAD + " rnnlab MiB before (tensors / RSS rise) |", "|---" * 7 + "|"]
    else:
        lines += [MEMORY_HEAD, "|---" * 6 + "|"]
    for r in result["memory"]:
        was = earlier.get((r["cell"], r["config"]))
        row = [r["cell"], r["config"], *memory_cells(r)]
        if before:
            row.append("n/a" if was is None else " / ".join(memory_cells(was)[::2]))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- streaming


def streaming(cell: str, H: int, steps: int, repeats: int) -> dict:
    """µs per step at B=1: rnnlab.nn.Stream.step vs calling the torch.nn cell."""
    torch.manual_seed(0)
    ref = getattr(torch.nn, cell + "Cell")(H, H)
    layer = getattr(rnn, cell)(H, H).eval()
    layer.load_state_dict({k + "_l0": v for k, v in ref.state_dict().items()})
    stream = rnn.Stream(layer)
    xs = torch.randn(steps, H)

    def ours():
        for t in range(steps):
            stream.step(xs[t])

    def theirs():
        h = torch.zeros(1, H)
        state = (h, torch.zeros(1, H)) if cell == "LSTM" else h
        with torch.no_grad():
            for t in range(steps):
                state = ref(xs[t : t + 1], state)

    a, b, _, _ = interleaved(ours, theirs, repeats)
    return {
        "cell": cell, "H": H, "I": H,
        "rnnlab_us_per_step": a / steps * 1e6, "torch_cell_us_per_step": b / steps * 1e6,
        "ratio": b / a,
    }


# ---------------------------------------------------------------------------- compile


def compiled_vs_eager(cell: str, cfg: Config, repeats: int) -> list[dict]:
    """An rnnlab layer eager vs the same layer (same parameters) under
    ``torch.compile(fullgraph=True)``: median ms of each mode and the time of the first
    compiled call, which compiles (training: the forward and the backward graph)."""
    torch.compiler.reset()  # a fresh cache: no recompile limit carried over from other layers
    _, ours, x = make_pair(cell, cfg)
    compiled = torch.compile(ours, fullgraph=True)
    rows = []
    for mode, make in (("inference", inference), ("training", training)):
        start = time.perf_counter()
        make(compiled, x)()
        compile_s = time.perf_counter() - start
        a, b, ta, tb = interleaved(make(ours, x), make(compiled, x), repeats)
        rows.append({"cell": cell, "config": cfg.name, "mode": mode, "eager_ms": a * 1e3,
                     "compiled_ms": b * 1e3, "ratio": a / b, "first_call_s": compile_s,
                     "eager_runs_ms": [t * 1e3 for t in ta],
                     "compiled_runs_ms": [t * 1e3 for t in tb]})
    return rows


# ---------------------------------------------------------------------------- load


class BusyCore:
    """A child process spinning on one core while the block runs."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


# ---------------------------------------------------------------------------- main


def run(repeats: int, under_load: bool, only: list[str] | None, variants: list[str],
        with_memory: bool = True, compile_rows: bool = False,
        with_streaming: bool = False) -> dict:
    peak = gemm_peak(repeats)
    print(f"{cpu_model()} ({llvm.get_host_cpu_name()}), vector features: "
          f"{' '.join(vector_features())}")
    print(f"GEMM peak (2048³, torch, {torch.get_num_threads()} threads): {peak:.1f} GFLOP/s")
    print(f"kernel variants: {', '.join(variants) or active_variant() + ' (automatic)'}")
    points, memory = [], []
    for cfg in GRID:
        for cell in cfg.cells:
            if only and not any(o in f"{cell} {cfg.name}" for o in only):
                continue
            ref, ours, x = make_pair(cell, cfg)
            flops = matmul_flops(cell, cfg)
            for mode, make, factor in (("inference", inference, 1), ("training", training, 3)):
                mine = [with_variant(make(ours, x), v) for v in variants or [None]]
                *ours_runs, tb = interleaved_all([*mine, make(ref, x)], repeats)
                b = statistics.median(tb)
                for variant, ta in zip(variants or [active_variant()], ours_runs, strict=True):
                    a = statistics.median(ta)
                    p = Point(
                        cell, cfg.name, mode, a * 1e3, b * 1e3, b / a,
                        factor * flops / a / 1e9, factor * flops / b / 1e9,
                        [t * 1e3 for t in ta], [t * 1e3 for t in tb], variant,
                    )
                    points.append(p)
                    print(f"{cell:5s} {cfg.name:32s} {mode:9s} {variant:8s} rnnlab "
                          f"{p.rnnlab_ms:9.2f} ms  torch {p.torch_ms:9.2f} ms  ratio "
                          f"{p.ratio:5.2f}  ({p.rnnlab_gflops:.1f} vs {p.torch_gflops:.1f} "
                          f"GFLOP/s)", flush=True)
            if not with_memory:
                continue
            mem = {"cell": cell, "config": cfg.name, **memory_in_child(cell, cfg.name)}
            memory.append(mem)
            print(f"      training-step peak memory: rnnlab {mem['rnnlab_mib']:.1f} MiB, "
                  f"torch {mem['torch_mib']:.1f} MiB", flush=True)

    recording = None
    if not only:
        cfg = GRID[1]
        _, ours, x = make_pair("LSTM", cfg)
        plain = inference(ours, x)

        def recorded():
            with torch.no_grad(), rnn.record(ours, grads=False):
                ours(x)

        a, b, _, _ = interleaved(recorded, plain, repeats)
        recording = {"config": "LSTM " + cfg.name, "recorded_ms": a * 1e3, "plain_ms": b * 1e3,
                     "overhead": a / b}
        print(f"gate recording: {a * 1e3:.2f} ms vs {b * 1e3:.2f} ms ({a / b:.2f}x)")

    stream = []
    if not only or with_streaming:
        for H in STREAM_SIZES:
            for cell in CELLS:
                s = streaming(cell, H, steps=200, repeats=repeats)
                stream.append(s)
                print(f"streaming {cell:5s} H={H:3d}: rnnlab {s['rnnlab_us_per_step']:.2f} µs/step,"
                      f" torch cell {s['torch_cell_us_per_step']:.2f} µs/step ({s['ratio']:.1f}x)")

    compiled = []
    for cfg in COMPILE_GRID if compile_rows else ():
        for cell in cfg.cells:
            if only and not any(o in f"compile {cell} {cfg.name}" for o in only):
                continue
            for row in compiled_vs_eager(cell, cfg, repeats):
                compiled.append(row)
                print(f"compile {cell:5s} {cfg.name:32s} {row['mode']:9s} eager "
                      f"{row['eager_ms']:9.2f} ms  compiled {row['compiled_ms']:9.2f} ms  "
                      f"ratio {row['ratio']:5.2f}  (first call {row['first_call_s']:.1f} s)",
                      flush=True)

    loaded = []
    if under_load:
        with BusyCore():
            for cfg in GRID[:3]:
                for cell in ("LSTM", "GRU"):
                    ref, ours, x = make_pair(cell, cfg)
                    a, b, _, _ = interleaved(inference(ours, x), inference(ref, x), repeats)
                    loaded.append({"cell": cell, "config": cfg.name, "mode": "inference",
                                   "rnnlab_ms": a * 1e3, "torch_ms": b * 1e3, "ratio": b / a})
                    print(f"under load {cell} {cfg.name}: rnnlab {a * 1e3:.1f} ms, torch "
                          f"{b * 1e3:.1f} ms ({b / a:.2f}x)", flush=True)

    peak = max(peak, gemm_peak(repeats))  # measured again at the end: the best of both
    print(f"GEMM peak, best of start and end: {peak:.1f} GFLOP/s")
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {
            "platform": platform.platform(), "processor": platform.processor(),
            "cpu_model": cpu_model(), "llvm_cpu": llvm.get_host_cpu_name(),
            "vector_features": vector_features(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "rnnlab": rnnlab.__version__,
            "backend": "cpu (automatic choice)", "automatic_variant": active_variant(),
        },
        "variants": variants or [active_variant()],
        "repeats": repeats,
        "load_average": os.getloadavg(),  # 1, 5, 15 min, at the end of the run
        "gemm_peak_gflops": peak,
        "points": [asdict(p) for p in points],
        "memory": memory,
        "gate_recording": recording,
        "streaming": stream,
        "compile": compiled,
        "under_load": loaded,
    }


def markdown(result: dict) -> str:
    peak = result["gemm_peak_gflops"]
    m = result["machine"]
    runs_of_points = [(p["rnnlab_runs_ms"], p["torch_runs_ms"]) for p in result["points"]]
    runs_of_points += [(c["eager_runs_ms"], c["compiled_runs_ms"])
                       for c in result.get("compile", [])]
    spreads = [max(runs) / min(runs) for pair in runs_of_points for runs in pair if min(runs) > 0]
    spread = statistics.median(spreads) if spreads else 1.0
    lines = [
        "# rnnlab vs torch.nn on the CPU",
        "",
        f"{result.get('date', 'undated')}; {m.get('cpu_model', m['processor'])} "
        f"(LLVM: {m.get('llvm_cpu', '?')}), vector features: "
        f"{' '.join(m.get('vector_features', [])) or 'not recorded'}; kernel variants timed: "
        f"{', '.join(result.get('variants', ['automatic']))} (automatic choice here: "
        f"{m.get('automatic_variant', 'n/a')}).",
        "",
        f"Run-to-run spread (slowest / fastest round of a point), median over points: "
        f"{spread:.2f}x" + (" — the machine was busy with other work during this run; ratios"
                            " come from interleaved rounds, absolute times are noisy."
                            if spread > 1.3 else "."),
        "",
        f"{m['processor'] or m['platform']}, {m['cpu_count']} cores, torch {m['torch']} with "
        f"{m['torch_threads']} threads; median of {result['repeats']} interleaved runs. "
        f"Ratio = torch time / rnnlab time (> 1: rnnlab faster). Measured GEMM peak "
        f"(2048³, best run): **{peak:.0f} GFLOP/s**; GFLOP/s below count matrix products "
        f"only, and the large-shape target is 60 % of the peak ({0.6 * peak:.0f} GFLOP/s).",
    ]
    if result.get("load_average"):
        lines += ["", "Load average at the end of the run (1, 5, 15 min): "
                  + ", ".join(f"{v:.2f}" for v in result["load_average"]) + "."]
    by_variant: dict[str, dict[tuple[str, str], dict[str, dict]]] = {}
    for p in result["points"]:
        table = by_variant.setdefault(p.get("variant", "automatic"), {})
        table.setdefault((p["cell"], p["config"]), {})[p["mode"]] = p
    for variant, by_key in by_variant.items():
        lines += [
            "", f"Kernel variant: **{variant}**", "",
            "| cell | configuration | inference ms (rnnlab / torch) | ratio | training ms "
            "(rnnlab / torch) | ratio | GFLOP/s train (rnnlab / torch) |",
            "|---|---|---|---|---|---|---|",
        ]
        for (cell, config), modes in by_key.items():
            inf, tr = modes["inference"], modes["training"]
            lines.append(
                f"| {cell} | {config} | {inf['rnnlab_ms']:.1f} / {inf['torch_ms']:.1f} | "
                f"{inf['ratio']:.2f} | {tr['rnnlab_ms']:.1f} / {tr['torch_ms']:.1f} | "
                f"{tr['ratio']:.2f} | {tr['rnnlab_gflops']:.1f} / {tr['torch_gflops']:.1f} |"
            )
    if result.get("before"):
        lines += before_and_after(result)
    if result["memory"]:
        lines += ["", "Peak memory of one training step (bytes held in tensors, and the "
                  "rise of the peak RSS, which misses heap reuse; see the module docstring):",
                  "", MEMORY_HEAD, "|---" * 6 + "|"]
    for mem in result["memory"]:
        lines.append("| " + " | ".join([mem["cell"], mem["config"], *memory_cells(mem)]) + " |")
    if result["streaming"]:
        lines += ["", "Streaming, one step at batch size 1 (input size = H):", "",
                  "| cell | H | rnnlab Stream µs/step | torch.nn cell µs/step | ratio |",
                  "|---|---|---|---|---|"]
        for s in result["streaming"]:
            lines.append(f"| {s['cell']} | {s['H']} | {s['rnnlab_us_per_step']:.2f} | "
                         f"{s['torch_cell_us_per_step']:.2f} | {s['ratio']:.1f} |")
    if result["gate_recording"]:
        g = result["gate_recording"]
        lines += ["", f"Gate recording ({g['config']}, inference): {g['recorded_ms']:.1f} ms "
                  f"with vs {g['plain_ms']:.1f} ms without ({g['overhead']:.2f}x)."]
    if result.get("compile"):
        lines += ["", "rnnlab's layer eager vs `torch.compile(fullgraph=True)` (ratio = eager / "
                  "compiled: > 1, compiled faster; first call = compilation):", "",
                  "| cell | configuration | mode | eager ms | compiled ms | ratio | first call s |",
                  "|---|---|---|---|---|---|---|"]
        for c in result["compile"]:
            lines.append(f"| {c['cell']} | {c['config']} | {c['mode']} | {c['eager_ms']:.1f} | "
                         f"{c['compiled_ms']:.1f} | {c['ratio']:.2f} | {c['first_call_s']:.1f} |")
    if result["under_load"]:
        lines += ["", "Under load (a busy process holding one core), inference:", "",
                  "| cell | configuration | rnnlab ms | torch ms | ratio |",
                  "|---|---|---|---|---|"]
        for u in result["under_load"]:
            lines.append(f"| {u['cell']} | {u['config']} | {u['rnnlab_ms']:.1f} | "
                         f"{u['torch_ms']:.1f} | {u['ratio']:.2f} |")
    return "\n".join(lines) + "\n"


def before_and_after(result: dict) -> list[str]:
    """A table of torch/rnnlab ratios: an earlier run (``result["before"]``, e.g. the code
    before a change, run separately) next to each variant of this one, for the points
    both have."""
    before = result["before"]
    variants = result.get("variants", ["automatic"])
    ratio = {(p["cell"], p["config"], p["mode"], p.get("variant", "automatic")): p["ratio"]
             for p in result["points"]}
    lines = ["", f"torch / rnnlab ratio before ({before['label']}, a separate run of "
             f"{before['date']}) and now, per kernel variant:", "",
             "| cell | configuration | mode | variant before | before | "
             + " | ".join(variants) + " |", "|---|---|---|---|---|" + "---|" * len(variants)]
    for p in before["points"]:
        now = [ratio.get((p["cell"], p["config"], p["mode"], v)) for v in variants]
        if all(r is None for r in now):
            continue
        lines.append(f"| {p['cell']} | {p['config']} | {p['mode']} | "
                     f"{p.get('variant', 'automatic')} | {p['ratio']:.2f} | "
                     + " | ".join("" if r is None else f"{r:.2f}" for r in now) + " |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="rounds per point (median)")
    parser.add_argument("--under-load", action="store_true", help="also run with a core busy")
    parser.add_argument("--only", action="append",
                        help="run only points whose 'CELL CONFIG' (compile rows: "
                        "'compile CELL CONFIG') contains this (repeatable)")
    parser.add_argument("--variants", help="cpu kernel variants to time, comma-separated, or "
                        "'all' that this CPU runs (default: the automatic choice)")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the training-step memory (a child process per point)")
    parser.add_argument("--memory-only", action="store_true",
                        help="only the training-step memory (with --before: an earlier "
                        "--memory-only run's JSON)")
    parser.add_argument("--streaming", action="store_true",
                        help="time streaming with --only too (without --only it always runs)")
    parser.add_argument("--compile", action="store_true",
                        help="also time eager vs torch.compile(fullgraph=True) rnnlab layers")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--name", default="cpu", help="results file name, without suffix")
    parser.add_argument("--before", nargs=2, metavar=("JSON", "LABEL"),
                        help="an earlier run's results, shown next to this run's ratios")
    parser.add_argument(_MEMORY_FLAG, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_of:
        memory_child(args.memory_of)
        return
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.memory_only:
        result = memory_run(args.only)
        if args.before:
            earlier = json.loads(Path(args.before[0]).read_text())
            result["before"] = {"label": args.before[1], "date": earlier.get("date", "undated"),
                                "memory": earlier["memory"]}
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / f"{args.name}.md").write_text(memory_markdown(result))
        print(f"wrote {args.out / args.name}.json and .md")
        return
    result = run(args.repeats, args.under_load, args.only, kernel_variants(args.variants),
                 with_memory=not args.no_memory, compile_rows=args.compile,
                 with_streaming=args.streaming)
    if args.before:
        earlier = json.loads(Path(args.before[0]).read_text())
        result["before"] = {"label": args.before[1], "date": earlier.get("date", "undated"),
                            "points": earlier["points"]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{args.name}.md").write_text(markdown(result))
    print(f"wrote {args.out / args.name}.json and .md")


if __name__ == "__main__":
    main()

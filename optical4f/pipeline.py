"""Latency of a FramePlan frame by frame: serial (nothing overlapped, an upper bound) and
pipelined (every device works as soon as its inputs and its own previous work allow),
with a per-layer timeline plot.

Stages of one optical frame, each on its own device (times in s)::

    input load   1 / input modulator rate         input modulator (DAC write)
    exposure     worst-case frame energy / laser power (the photon budget of
                 optical4f.cost.photon_budget: every pixel lit to the exposure level)
    read-out     1 / camera rate                  camera (the quoted frame rate is read-out bound)
    electronics  the layer's electronic work / its frames          host
    filter load  1 / Fourier modulator rate, once per kernel chunk  Fourier modulator

Pipelined rules (``schedule``):

* input modulator double-buffered (``double_buffered=True``; LCoS and DMD controllers hold
  the next frame while showing the current one): frame i+1 is written while frame i is
  exposed; single-buffered it is written after frame i's exposure ends;
* the camera reads frame i out during the exposure of frame i+1 (overlap mode); frame
  i+1's exposure may start once frame i's read-out has started (one storage node per
  pixel), and read-outs follow one another;
* electronics of frame i (sqrt, sign recombination, channel sums) run once it is read out,
  overlapping later exposures; the host is one device shared with the host ops;
* a Fourier filter is loaded once the last exposure under the previous filter has ended --
  weights are constants, so the first filter of a layer loads while the previous layer's
  electronics and host ops still run;
* a layer's first input frame waits for the layer's input (the previous node's end):
  nodes depend on each other in graph order (a chain; parallel branches are not overlapped).

Serial (``serial_latency``): the sum of every stage of every frame, every filter load and
every host op. The pipelined latency is at most the serial one (the ASAP schedule of the
same precedence constraints) and at least the busiest device's total work.

Chunks of identical frames are simulated frame by frame until the schedule's increments
repeat (a max-plus recurrence reaches its period after a few frames), then advanced in one
step -- a layer of 10^6 frames costs microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .cost import frame_period_s, host_cost, layer_cost, photon_budget
from .devices import OpticalConfig
from .mapping import FramePlan

__all__ = ["StageTimes", "stage_times", "NodeSpan", "Timeline", "schedule", "serial_latency", "plot_timeline",
           "RESOURCES"]

RESOURCES = ("input modulator", "Fourier modulator", "camera exposure", "camera read-out", "host electronics")
_EXACT_FRAMES = 16


@dataclass(frozen=True)
class StageTimes:
    """Duration of each stage (s) and whether the input modulator is double-buffered."""

    input_load_s: float
    exposure_s: float
    readout_s: float
    filter_load_s: float
    double_buffered: bool = True


def stage_times(cfg: OpticalConfig, frame_px: int, double_buffered: bool = True) -> StageTimes:
    """Stage durations of ``frame_px``-square frames on the configured devices."""
    budget = photon_budget(cfg, frame_px)
    exposure = budget["frame_energy_needed_max_j"] / max(cfg.laser.power_w, 1e-300)
    return StageTimes(1.0 / cfg.input_modulator.frame_rate_hz, exposure, 1.0 / cfg.camera.frame_rate_hz,
                      1.0 / cfg.fourier_modulator.frame_rate_hz, double_buffered)


@dataclass
class NodeSpan:
    """One node of the plan on the timeline: per device its first start, last end and busy time."""

    name: str
    kind: str                 # "optical" or "host"
    start_s: float
    end_s: float
    devices: dict = field(default_factory=dict)  # resource -> [first start, last end, busy s]
    frames: int = 0

    def _use(self, res: str, start: float, end: float, busy: float) -> None:
        d = self.devices.setdefault(res, [start, end, 0.0])
        d[0], d[1], d[2] = min(d[0], start), max(d[1], end), d[2] + busy


@dataclass
class Timeline:
    spans: list[NodeSpan]
    latency_s: float
    busy_s: dict  # resource -> total busy time
    stages: dict  # layer name -> StageTimes as a dict

    @property
    def slowest_device(self) -> tuple[str, float]:
        res = max(self.busy_s, key=self.busy_s.get)
        return res, self.busy_s[res]


def _chunks(frames: int, loads: int) -> list[int]:
    loads = max(1, min(loads, frames)) if frames else 0
    if not loads:
        return []
    base, extra = divmod(frames, loads)
    return [base + (1 if j < extra else 0) for j in range(loads)]


class _State:
    """Free times of the devices and the last frames' events (s)."""

    def __init__(self):
        self.ready = 0.0       # the current node's input is available
        self.host = 0.0
        self.slm = 0.0         # input modulator writer free
        self.fourier = 0.0     # Fourier modulator free to change (last exposure under it ended, last load done)
        self.exp_end = [0.0, 0.0]   # exposure end of frames i-1, i-2
        self.ro_start = 0.0
        self.ro_end = 0.0

    def vector(self) -> tuple:
        return (self.host, self.slm, self.exp_end[0], self.exp_end[1], self.ro_start, self.ro_end)

    def shift(self, d: float) -> None:
        self.host += d
        self.slm += d
        self.exp_end = [self.exp_end[0] + d, self.exp_end[1] + d]
        self.ro_start += d
        self.ro_end += d


def _frame(st: _State, t: StageTimes, filt_end: float, t_e: float, span: NodeSpan) -> None:
    buf_free = st.exp_end[1] if t.double_buffered else st.exp_end[0]
    load0 = max(st.ready, st.slm, buf_free)
    st.slm = load0 + t.input_load_s
    exp0 = max(st.slm, st.exp_end[0], filt_end, st.ro_start)
    exp1 = exp0 + t.exposure_s
    ro0 = max(exp1, st.ro_end)
    st.ro_start, st.ro_end = ro0, ro0 + t.readout_s
    el0 = max(st.ro_end, st.host)
    st.host = el0 + t_e
    st.exp_end = [exp1, st.exp_end[0]]
    span._use("input modulator", load0, st.slm, t.input_load_s)
    span._use("camera exposure", exp0, exp1, t.exposure_s)
    span._use("camera read-out", ro0, st.ro_end, t.readout_s)
    span._use("host electronics", el0, st.host, t_e)


def _run_chunk(st: _State, t: StageTimes, n: int, filt_end: float, t_e: float, span: NodeSpan) -> None:
    """Frames one by one until the recurrence is periodic, then the rest in one step.

    Periodic: two equal increment vectors in a row with every optical event advancing by
    the same period P, and the host either advancing by P too or, being the slower stage
    (t_e > P), already behind the read-out -- then it stays behind and advances by t_e."""
    done, prev, inc = 0, None, None
    while done < n:
        _frame(st, t, filt_end, t_e, span)
        done += 1
        v = st.vector()
        if prev is not None:
            d = [a - b for a, b in zip(v, prev)]
            if inc is not None and done >= _EXACT_FRAMES and done < n and _same(d, inc):
                P, dh = d[1], d[0]
                optics_periodic = all(_close(x, P) for x in d[1:])
                host_ok = _close(dh, P) or (dh > P and _close(dh, t_e) and st.host >= st.ro_end)
                if optics_periodic and host_ok:
                    m = n - done
                    st.shift(m * P)
                    st.host += m * (dh - P)
                    for res, per in (("input modulator", t.input_load_s), ("camera exposure", t.exposure_s),
                                     ("camera read-out", t.readout_s)):
                        dev = span.devices[res]
                        dev[1] += m * P
                        dev[2] += m * per
                    dev = span.devices["host electronics"]
                    dev[1] = st.host
                    dev[2] += m * t_e
                    return
            inc = d
        prev = v


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-12 * max(abs(a), abs(b), 1e-30)


def _same(d: list, e: list) -> bool:
    return all(_close(a, b) for a, b in zip(d, e))


def schedule(plan: FramePlan, cfg: OpticalConfig, double_buffered: bool = True) -> Timeline:
    """The pipelined timeline of ``plan`` (see module doc)."""
    st = _State()
    spans: list[NodeSpan] = []
    stages: dict = {}
    layer_costs = [layer_cost(l, cfg) for l in plan.layers]
    order = plan.order or ([("layer", i) for i in range(len(plan.layers))] +
                           [("host", i) for i in range(len(plan.host_ops))])
    for kind, i in order:
        if kind == "host":
            h = plan.host_ops[i]
            t = host_cost(h, cfg)["latency_s"]
            s0 = max(st.ready, st.host)
            st.host = st.ready = s0 + t
            span = NodeSpan(h.name, "host", s0, st.host)
            span._use("host electronics", s0, st.host, t)
            spans.append(span)
            continue
        layer = plan.layers[i]
        t = stage_times(cfg, layer.frame_px, double_buffered)
        stages[layer.name] = t.__dict__.copy()
        t_e = layer_costs[i]["electronic_time_s"] / max(layer.frames, 1)
        span = NodeSpan(layer.name, "optical", float("inf"), 0.0, frames=layer.frames)
        for n in _chunks(layer.frames, layer.filter_loads):
            f0 = st.fourier
            filt_end = f0 + t.filter_load_s
            span._use("Fourier modulator", f0, filt_end, t.filter_load_s)
            _run_chunk(st, t, n, filt_end, t_e, span)
            st.fourier = max(st.exp_end[0], filt_end)
        if not layer.frames:  # nothing on the optics: only its electronic work
            s0 = max(st.ready, st.host)
            st.host = s0 + layer_costs[i]["electronic_time_s"]
            span._use("host electronics", s0, st.host, layer_costs[i]["electronic_time_s"])
        span.start_s = min(d[0] for d in span.devices.values())
        span.end_s = st.host
        st.ready = st.host
        spans.append(span)
    busy = {r: sum(s.devices.get(r, [0, 0, 0.0])[2] for s in spans) for r in RESOURCES}
    return Timeline(spans, st.ready, busy, stages)


def serial_latency(plan: FramePlan, cfg: OpticalConfig) -> dict:
    """Nothing overlapped: per optical layer ``frames x (load + exposure + read-out) +
    filter loads x filter load time + electronic time``, plus every host op (s)."""
    layers = {}
    for l, c in zip(plan.layers, (layer_cost(l, cfg) for l in plan.layers)):
        t = stage_times(cfg, l.frame_px)
        layers[l.name] = (l.frames * (t.input_load_s + t.exposure_s + t.readout_s) + l.filter_loads * t.filter_load_s
                          + c["electronic_time_s"])
    hosts = {h.name: host_cost(h, cfg)["latency_s"] for h in plan.host_ops}
    return {"latency_s": sum(layers.values()) + sum(hosts.values()), "layers": layers, "host_ops": hosts,
            "frame_period_s": frame_period_s(cfg)}


def plot_timeline(tl: Timeline, path, title: str = "", serial_s: float | None = None, max_labels: int = 24) -> str:
    """Per-layer timeline PNG: one row per device, one bar per node (its first start to last
    end on that device, labelled with optical layers' names)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(RESOURCES)
    fig, ax = plt.subplots(figsize=(11, 3.8))
    cmap = plt.get_cmap("tab20")
    optical = [s for s in tl.spans if s.kind == "optical"]
    colour = {s.name: cmap(k % 20) for k, s in enumerate(optical)}
    unit, scale = ("ms", 1e3) if tl.latency_s < 1 else ("s", 1.0)
    for s in tl.spans:
        for res, (a, b, busy) in s.devices.items():
            y = rows.index(res)
            c = colour.get(s.name, (0.6, 0.6, 0.6, 1.0))
            ax.barh(y, max(b - a, tl.latency_s * 1e-4) * scale, left=a * scale, height=0.7, color=c,
                    edgecolor="none", alpha=0.9 if s.kind == "optical" else 0.6)
    for k, s in enumerate(optical[:max_labels]):
        ax.text(s.start_s * scale, -0.75 - 0.35 * (k % 2), s.name[-18:], fontsize=6, color=colour[s.name])
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_ylim(len(rows) - 0.4, -1.6)
    ax.set_xlabel(f"time ({unit})")
    txt = f"pipelined latency {tl.latency_s * scale:.4g} {unit}"
    if serial_s is not None:
        txt += f" (serial upper bound {serial_s * scale:.4g} {unit})"
        ax.axvline(min(serial_s, tl.latency_s) * scale, color="k", lw=0.5)
    ax.set_title((title + ": " if title else "") + txt + "; grey = host ops", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)

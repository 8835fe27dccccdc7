"""torch.compile trial: does compiling the generator pay off? Compile time, steady-state latency, max |difference|.

    python benchmarks/compile_trial.py [--json] [--presets demo:2,celeba_8x:1] [--device cpu] [--mode default]

Compares eager (deepsee's default) with `torch.compile(generator)` on the same inputs (a procedural face's mask,
random weights, eval mode, no grad). The lookup path's mixed-pixel count depends on the mask (data-dependent
shapes), so the compiled graph breaks there; this script measures what is left to gain.
"""
from __future__ import annotations
import argparse, json, statistics, sys, time


def run(name: str, batch: int, device: str, mode: str, reps: int) -> dict:
    import numpy as np, torch
    from deepsee.core import preset
    from deepsee.architecture import Generator
    from deepsee.fast import set_modulation
    from deepsee.data import procedural_face
    cfg = preset(name)
    torch.manual_seed(0)
    G = set_modulation(Generator(cfg).to(device).eval(), 'fused')   # as in a DeepSEE bundle
    lab = torch.from_numpy(procedural_face(cfg.hr_size, 1234)[1].astype(np.int64))[None].to(device).expand(batch, -1, -1)
    lr = (torch.rand(1, 3, cfg.lr_size, cfg.lr_size, device=device) * 2 - 1).expand(batch, -1, -1, -1)
    style = torch.rand(batch, 19, cfg.encoder.style_dim, device=device) * 2 - 1
    sync = (lambda: torch.cuda.synchronize()) if device.startswith('cuda') else (lambda: None)

    def timed(fn):
        ts = []
        for _ in range(reps):
            sync(); t = time.perf_counter(); fn(); sync(); ts.append(time.perf_counter() - t)
        return statistics.median(ts)

    with torch.no_grad():
        ref = G(lr, lab, style)
        eager = timed(lambda: G(lr, lab, style))
        Gc = torch.compile(G, mode=mode)
        t = time.perf_counter()
        try:
            out = Gc(lr, lab, style); sync()
        except Exception as e:    # a failed compile is a result too
            return dict(preset=name, batch=batch, device=device, eager_ms=eager * 1e3, error=f'{type(e).__name__}: {e}'[:300])
        first = time.perf_counter() - t
        comp = timed(lambda: Gc(lr, lab, style))
    return dict(preset=name, batch=batch, device=device, mode=mode, eager_ms=eager * 1e3, compiled_ms=comp * 1e3,
                speedup=eager / comp, first_call_s=first, max_abs_diff=float((out - ref).abs().max()))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--json', action='store_true')
    p.add_argument('--presets', default='demo:2,celeba_8x:1')
    p.add_argument('--device', default='cpu')
    p.add_argument('--mode', default='default', help='torch.compile mode (default, reduce-overhead, max-autotune)')
    p.add_argument('--reps', type=int, default=5)
    a = p.parse_args(argv)
    out = []
    for spec in a.presets.split(','):
        name, batch = spec.split(':')
        r = run(name, int(batch), a.device, a.mode, a.reps)
        out.append(r)
        if not a.json:
            if 'error' in r: print(f"{spec}: eager {r['eager_ms']:.0f} ms; compile failed: {r['error']}")
            else: print(f"{spec}: eager {r['eager_ms']:.0f} ms, compiled {r['compiled_ms']:.0f} ms (x{r['speedup']:.2f}), "
                        f"first call {r['first_call_s']:.1f} s, max |diff| {r['max_abs_diff']:.1e}", flush=True)
    if a.json: print(json.dumps(out))
    return 0


if __name__ == '__main__':
    sys.exit(main())

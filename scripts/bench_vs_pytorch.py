#!/usr/bin/env python3
"""Times this project's kernels and networks against PyTorch's, side by side.

Run through scripts/bench-vs-pytorch.sh, which makes the venv. Our side is
`codiff bench --serve`: it lists the cases (the kernel table's shapes, a
training step of the default-size UNet, the full-size UNet and dynamic
diffuser, the full-size collaborative step) and times one run when asked. This script builds each case's twin
in PyTorch (the networks from scripts/torch_reference.py, checked against our
variables' names and shapes) and alternates: ours, PyTorch's, ours, ... so
that both see the same load; medians are reported with their ratio, and
each side's share of the machine's FMA peak (our loop, `peak`), counting the
operations PyTorch's flop counter finds in the case.

    python3 scripts/bench_vs_pytorch.py --codiff target/release/codiff [--reps 5] [--out bench.json]
    python3 scripts/bench_vs_pytorch.py --cuda-stubs DIR   # see make_cuda_stubs
"""

import argparse
import datetime
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

# Full-size networks take seconds per run: fewer repetitions.
SLOW_CASES_REPS = 3
# Cases timed again at 1 thread, for the scaling table.
SCALING_KINDS = ("matmul", "unet_train", "unet_forward")


def make_cuda_stubs(lib_dir):
    """Gives PyPI's torch wheel the CUDA libraries it links against, as stubs.

    PyPI's Linux torch is a CUDA build: its libraries (libtorch_cpu.so
    included) name libcudart, cublas, cudnn and others as dependencies, which
    come as 3 GB of nvidia-* wheels. A CPU run calls none of them, so each
    missing library is replaced by a small one that defines the same symbols
    (with the same symbol versions) and returns 100 (cudaErrorNoDevice) from
    every one: torch imports, and reports no GPU.
    """
    libs = sorted(glob.glob(os.path.join(lib_dir, "*.so")))
    missing = set()
    for lib in libs:
        ldd = subprocess.run(["ldd", lib], capture_output=True, text=True, check=True).stdout
        missing |= set(re.findall(r"^\s*(\S+) => not found", ldd, re.M))
    version_file, per_lib, loose = {}, {name: {} for name in missing}, set()
    undefined = []
    for lib in libs:
        out = subprocess.run(["readelf", "-W", "-V", "--dyn-syms", lib], capture_output=True, text=True, check=True).stdout
        needed_from = None
        for line in out.splitlines():
            if m := re.search(r"File: (\S+)", line):
                needed_from = m.group(1)
            if (m := re.search(r"Name: (\S+)\s+Flags", line)) and needed_from:
                version_file[m.group(1)] = needed_from
        undefined += re.findall(r"\sUND (\w+)(?:@(\S+?))?(?: \(\d+\))?$", out, re.M)
    for symbol, version in undefined:
        if version and version_file.get(version) in missing:
            per_lib[version_file[version]].setdefault(version, set()).add(symbol)
        elif not version and re.match(r"(cu|nccl|nvshmem|nvrtc|cudnn|nvtx)", symbol, re.I):
            loose.add(symbol)  # the driver's and others' unversioned symbols: every stub defines them
    for name, versions in per_lib.items():
        symbols = set().union(loose, *versions.values())
        script = "".join(f"{v} {{ global: {'; '.join(sorted(s))}; }};\n" for v, s in versions.items())
        with tempfile.TemporaryDirectory() as tmp:
            source, version_script = os.path.join(tmp, "stub.c"), os.path.join(tmp, "stub.map")
            with open(source, "w") as f:
                f.write("".join(f"int {s}(void) {{ return 100; }}\n" for s in sorted(symbols)))
            with open(version_script, "w") as f:
                f.write(script)
            flags = [f"-Wl,--version-script={version_script}"] if script else []
            subprocess.run(["cc", "-shared", "-fPIC", "-o", os.path.join(lib_dir, name), f"-Wl,-soname,{name}", *flags, source], check=True)
    print(f"{len(missing)} CUDA libraries stubbed in {lib_dir}", file=sys.stderr)


class Ours:
    """`codiff bench --serve` at a fixed thread count."""

    def __init__(self, codiff, threads):
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
        self.process = subprocess.Popen([codiff, "bench", "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def ask(self, command):
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"codiff bench --serve stopped while answering '{command}'")
        answer = json.loads(line)
        if isinstance(answer, dict) and "error" in answer:
            raise SystemExit(f"codiff bench --serve, '{command}': {answer['error']}")
        return answer

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def unet_params(config, diffuser):
    import yaml

    params = yaml.safe_load(open(config))["model"]["params"]
    if diffuser:
        return params["compose_unet_config"]["params"]["confidence_map_predictor_config"]["params"]
    return params["unet_config"]["params"]


def collaborator_params(composed_config):
    """The mask collaborator's UNet parameters, from the config the composed one names (beside it)."""
    import yaml

    path = yaml.safe_load(open(composed_config))["model"]["params"]["seg_mask_ldm_config_path"]
    return unet_params(os.path.join(os.path.dirname(composed_config), os.path.basename(path)), False)


def check_same_network(net, ours, name):
    theirs = {k: list(v.shape) for k, v in net.state_dict().items()}
    if theirs != ours:
        only_ours, only_theirs = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
        shapes = sorted(k for k in set(ours) & set(theirs) if ours[k] != theirs[k])
        raise SystemExit(f"{name}: the PyTorch network differs from ours: only ours {only_ours[:5]}, only PyTorch {only_theirs[:5]}, shapes {shapes[:5]}")


def no_grad(forward):
    import torch

    def run():
        with torch.no_grad():
            forward()

    return run


def torch_case(case, ours_variables):
    """The PyTorch twin of one of our cases: a function that runs it once."""
    import torch
    import torch.nn.functional as F
    from torch_reference import UNetModel

    kind = case["kind"]
    if kind == "matmul":
        a, b = torch.randn(case["n"], case["n"]), torch.randn(case["n"], case["n"])
        return lambda: a @ b
    if kind in ("conv", "attention"):
        if kind == "conv":
            c, side, batch = case["channels"], case["side"], case["batch"]
            conv = torch.nn.Conv2d(c, c, 3, padding=1)
            inputs = [torch.randn(batch, c, side, side)]
            params = [*inputs, conv.weight, conv.bias]
            forward = lambda: conv(inputs[0])  # noqa: E731
        else:
            h, d, nq, nk = case["heads"], case["channels"], case["queries"], case["keys"]
            q, k, v = torch.randn(h, nq, d), torch.randn(h, nk, d), torch.randn(h, nk, d)
            params = [q, k, v]
            # As the original computes it: scores, softmax, weighted sum.
            forward = lambda: torch.einsum("bij,bjd->bid", (torch.einsum("bid,bjd->bij", q, k) * d**-0.5).softmax(dim=-1), v)  # noqa: E731
        if not case["train"]:
            return no_grad(forward)
        for p in params:
            p.requires_grad_(True)
        probe = torch.randn(forward().shape)

        def step():
            for p in params:
                p.grad = None
            (forward() * probe).sum().backward()

        return step
    if kind == "collab_step":
        return collaborative_step(case, ours_variables)
    p = unet_params(case["config"], case.get("diffuser", False))
    net = UNetModel(p)
    check_same_network(net, ours_variables, case["name"])
    batch = case.get("batch", 1)
    x = torch.randn(batch, p["in_channels"], p["image_size"], p["image_size"])
    t = torch.tensor([1 + i * 997 // batch for i in range(batch)], dtype=torch.float32)
    context = torch.randn(batch, case["context_tokens"], p["context_dim"])
    if kind == "unet_forward":
        return no_grad(lambda: net.eval()(x, t, context))
    noise = torch.randn_like(x)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.0)

    def train_step():
        opt.zero_grad(set_to_none=True)
        F.mse_loss(net(x, t, context), noise).backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()

    return train_step


def collaborative_step(case, ours_variables):
    """Both collaborators' UNets and both dynamic diffusers at batch 1, the
    per-pixel softmax of the diffusers' maps and the weighted sum (as
    torch_reference.py times it on the GPU). One UNet and one diffuser, each
    run under both conditions, stand in for the pairs, as on our side."""
    import torch
    from torch_reference import UNetModel

    nets = {}
    for prefix, p in [("unet", collaborator_params(case["config"])), ("diffuser", unet_params(case["config"], True))]:
        nets[prefix] = UNetModel(p).eval()
        mine = {k[len(prefix) + 1:]: v for k, v in ours_variables.items() if k.startswith(prefix + ".")}
        check_same_network(nets[prefix], mine, f"{case['name']} ({prefix})")
    p = collaborator_params(case["config"])
    x = torch.randn(1, p["in_channels"], p["image_size"], p["image_size"])
    t = torch.tensor([1.0])
    mask_context = torch.randn(1, case["context_tokens"], p["context_dim"])
    text_context = torch.randn(1, case["text_tokens"], p["context_dim"])
    unet, diffuser = nets["unet"], nets["diffuser"]

    def step():
        eps_mask, eps_text = unet(x, t, mask_context), unet(x, t, text_context)
        weights = torch.cat([diffuser(x, t, mask_context), diffuser(x, t, text_context)], dim=1).softmax(dim=1)
        return weights[:, :1] * eps_mask + weights[:, 1:] * eps_text

    return no_grad(step)


def interleaved(ours, case, reps):
    """Medians of `reps` alternating runs of ours and PyTorch's, after one
    warm-up each, and the case's floating-point operations: those of its
    matrix products, convolutions and attention as PyTorch counts them in its
    warm-up run (both sides compute the same ones; element-wise work is not
    counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    variables = ours.ask(f"setup {case['name']}")["variables"]
    run_torch = torch_case(case, variables)
    with FlopCounterMode(display=False) as counter:
        run_torch()
    ours_ms, torch_ms = [], []
    for _ in range(reps):
        ours_ms.append(ours.ask("run")["ms"])
        start = time.perf_counter()
        run_torch()
        torch_ms.append((time.perf_counter() - start) * 1e3)
    return statistics.median(ours_ms), statistics.median(torch_ms), counter.get_total_flops()


def peak_gflops(ours):
    """The best of three runs of our FMA loop at the server's thread count."""
    return max(ours.ask("peak")["gflops"] or 0.0 for _ in range(3)) or None


def share_of_peak(flops, ms, peak):
    return f"{flops / (ms * 1e6) / peak:.0%}" if peak and flops else "-"


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def cpu_features():
    flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags")), [])
    return ", ".join(name for flag, name in [("avx512f", "AVX-512"), ("amx_tile", "AMX")] if flag in flags) or "AVX2"


def fmt_ms(ms):
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codiff", help="the codiff binary (release build)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--only", help="only the cases whose name contains this")
    parser.add_argument("--no-scaling", action="store_true", help="skip the 1-thread runs")
    parser.add_argument("--out", help="also write every figure here as JSON")
    parser.add_argument("--cuda-stubs", metavar="DIR", help="only write stub CUDA libraries into DIR (torch/lib) and stop")
    args = parser.parse_args()
    if args.cuda_stubs:
        return make_cuda_stubs(args.cuda_stubs)
    if not args.codiff:
        parser.error("--codiff is required")
    # OpenMP's threads otherwise spin while they wait; on a busy machine a
    # spinning thread holds the core its sibling needs (2 threads took 4.4 s
    # against 0.25 s at 1 thread for the training step). Our side waits
    # without spinning too (see `pin_thread_count`).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    torch.manual_seed(0)
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()[0]
    ours = {args.threads: Ours(args.codiff, args.threads)}
    cases = [c for c in ours[args.threads].ask("cases") if not args.only or args.only in c["name"]]
    peak = peak_gflops(ours[args.threads])
    rows, scaling = [], []
    for case in cases:
        reps = SLOW_CASES_REPS if case["kind"] in ("unet_forward", "collab_step") else args.reps
        torch.set_num_threads(args.threads)
        ours_ms, torch_ms, flops = interleaved(ours[args.threads], case, reps)
        rows.append({"case": case["name"], "ours_ms": ours_ms, "pytorch_ms": torch_ms, "ratio": ours_ms / torch_ms, "reps": reps, "flops": flops})
        print(f"{case['name']}: ours {fmt_ms(ours_ms)} ms, PyTorch {fmt_ms(torch_ms)} ms, ratio {ours_ms / torch_ms:.2f}", file=sys.stderr)
        if not args.no_scaling and args.threads > 1 and case["kind"] in SCALING_KINDS:
            ours.setdefault(1, Ours(args.codiff, 1))
            torch.set_num_threads(1)
            ours_1, torch_1, _ = interleaved(ours[1], case, reps)
            scaling.append({"case": case["name"], "ours_ms_1": ours_1, "pytorch_ms_1": torch_1, "ours_ms_n": ours_ms, "pytorch_ms_n": torch_ms})
    peak_after = peak_gflops(ours[args.threads])
    peak_1 = peak_gflops(ours[1]) if scaling else None
    for server in ours.values():
        server.close()
    load_after = os.getloadavg()[0]
    header = {
        "cpu": cpu_model(),
        "cpu_features": cpu_features(),
        "cores": os.cpu_count(),
        "date": started.strftime("%Y-%m-%d"),
        "threads": args.threads,
        "torch": torch.__version__,
        "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
        "load_average_before": load_before,
        "load_average_after": load_after,
        "fma_peak_gflops_before": peak,
        "fma_peak_gflops_after": peak_after,
        "fma_peak_gflops_1_thread": peak_1,
    }
    print(f"\n{header['date']}, {header['cpu']} ({header['cpu_features']}, {header['cores']} cores), {args.threads} threads, "
          f"PyTorch {header['torch']} (OMP_WAIT_POLICY={header['omp_wait_policy']}); load average {load_before:.1f} before, {load_after:.1f} after "
          f"(medians of interleaved runs: ratios hold under load, absolute times do not)")
    if peak:
        print(f"FMA peak at {args.threads} threads (`codiff bench --serve`'s loop): {peak:.0f} GFLOP/s before, {peak_after or 0:.0f} after; "
              f"each case's share of it counts the matrix products, convolutions and attention alone (PyTorch's flop counter)")
    print("\n| case | ours ms | PyTorch ms | ours / PyTorch | GFLOP | ours, % of peak | PyTorch, % of peak |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {fmt_ms(r['ours_ms'])} | {fmt_ms(r['pytorch_ms'])} | {r['ratio']:.2f} | {r['flops'] / 1e9:.2f} "
              f"| {share_of_peak(r['flops'], r['ours_ms'], peak)} | {share_of_peak(r['flops'], r['pytorch_ms'], peak)} |")
    if scaling:
        print(f"\n| case | ours: 1 -> {args.threads} threads | speed-up | PyTorch: 1 -> {args.threads} threads | speed-up |\n|---|---|---|---|---|")
        if peak_1 and peak:
            print(f"| FMA peak loop | {peak_1:.0f} -> {peak:.0f} GFLOP/s | {peak / peak_1:.2f}x | | |")
        for s in scaling:
            print(f"| {s['case']} | {fmt_ms(s['ours_ms_1'])} -> {fmt_ms(s['ours_ms_n'])} ms | {s['ours_ms_1'] / s['ours_ms_n']:.2f}x "
                  f"| {fmt_ms(s['pytorch_ms_1'])} -> {fmt_ms(s['pytorch_ms_n'])} ms | {s['pytorch_ms_1'] / s['pytorch_ms_n']:.2f}x |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({**header, "cases": rows, "scaling": scaling}, f, indent=2)


if __name__ == "__main__":
    main()

# Skinny decode products, each of 28 launches over its own weight copy (as 28 layers), in one
# CUDA graph: µs per launch and the fraction of the copy rate by weight bytes.
import json, os, sys, torch
torch.manual_seed(0)
dev = "cuda"
bf = torch.bfloat16
def copy_rate():
    a = torch.empty(2 << 30, dtype=torch.uint8, device=dev); b = torch.empty_like(a)
    for _ in range(3): b.copy_(a)
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(True), torch.cuda.Event(True)
    s.record()
    for _ in range(10): b.copy_(a)
    e.record(); torch.cuda.synchronize()
    r = 2 * a.numel() * 10 / (s.elapsed_time(e) / 1e3)
    del a, b
    return r
rate = copy_rate()
print(json.dumps({"copy_gb_s": round(rate / 1e9, 1), "gpu": torch.cuda.get_device_name(),
                  "lt_ws": os.environ.get("CUBLASLT_WORKSPACE_SIZE")}), flush=True)
M = int(os.environ.get("ROWS", "64"))
shapes = json.loads(os.environ.get("SHAPES", json.dumps([
    ["7b-qkv", 3584, 4608, "bias"], ["7b-o", 3584, 3584, "acc"], ["7b-gate_up", 3584, 37888, "mm"],
    ["7b-down", 18944, 3584, "acc"], ["7b-lm_head", 3584, 152064, "mm"],
    ["05b-qkv", 896, 1152, "bias"], ["05b-o", 896, 896, "acc"], ["05b-gate_up", 896, 9728, "mm"],
    ["05b-down", 4864, 896, "acc"]])))
layers = 28
for name, K, N, kind in shapes:
    n_layers = 1 if "lm_head" in name else layers
    # linear layout [N, K] and the transposed copy [K, N]
    ws = [torch.randn(N, K, device=dev, dtype=bf) * 0.02 for _ in range(n_layers)]
    wts = [w.t().contiguous() for w in ws]
    bias = torch.randn(N, device=dev, dtype=bf)
    x = torch.randn(M, K, device=dev, dtype=bf)
    out = torch.zeros(M, N, device=dev, dtype=bf)
    res = {}
    for lib in ("cublas", "cublaslt"):
        torch.backends.cuda.preferred_blas_library(lib)
        for layout in ("linear", "transposed"):
            mats = [w.t() for w in ws] if layout == "linear" else wts
            keep = []
            def step():
                keep.clear()
                for w in mats:
                    if kind == "bias" and layout == "linear":
                        keep.append(torch.nn.functional.linear(x, w.t(), bias))
                    elif kind == "bias":
                        keep.append(torch.addmm(bias, x, w))
                    elif kind == "acc":
                        out.addmm_(x, w)
                    else:
                        torch.mm(x, w, out=out)
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                step(); step()
            torch.cuda.current_stream().wait_stream(s)
            torch.cuda.synchronize()
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                step()
            best = 1e9
            for _ in range(5):
                st, en = torch.cuda.Event(True), torch.cuda.Event(True)
                st.record()
                for _ in range(10): g.replay()
                en.record(); torch.cuda.synchronize()
                best = min(best, st.elapsed_time(en) * 1e3 / (10 * len(mats)))
            prof = None
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as p:
                g.replay(); torch.cuda.synchronize()
            names = {e.name[:40] for e in p.events() if e.device_type == torch.autograd.DeviceType.CUDA}
            floor = N * K * 2 / rate * 1e6
            res[f"{lib}/{layout}"] = [round(best, 2), round(floor / best, 3), sorted(names)[:2]]
            del g
    print(json.dumps({"shape": name, "M": M, "K": K, "N": N, "floor_us": round(N * K * 2 / rate * 1e6, 2), **res}), flush=True)
    del ws, wts
    torch.cuda.empty_cache()

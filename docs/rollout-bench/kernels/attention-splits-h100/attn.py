# Attention kernel microbench: compiles variants of torch/csrc/kernels.cpp's NVRTC source,
# times decode_attention_partial (+ combine) in a CUDA graph of REPS launches, checks errors.
import ctypes, os, sys, json, math, time
import torch
def cuda_text(path):
    t = open(path).read()
    return t[t.index('R"CUDA(') + 7:t.index(')CUDA"')]
SOURCES = {"new": cuda_text(sys.argv[1]), "old": cuda_text(sys.argv[2])}
lib = os.path.join(os.path.dirname(torch.__file__), '..', 'nvidia', 'cu13', 'lib')
for name in os.listdir(lib):
    if name.startswith('libnvrtc-builtins.so'):
        ctypes.CDLL(os.path.join(lib, name), mode=ctypes.RTLD_GLOBAL)
nvrtc = ctypes.CDLL(os.path.join(lib, 'libnvrtc.so.13'))
cuda = ctypes.CDLL('libcuda.so.1')
torch.cuda.init(); torch.zeros(1, device='cuda')
major, minor = torch.cuda.get_device_capability()

def compile_(src, defines):
    prog = ctypes.c_void_p()
    assert nvrtc.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), b"k.cu", 0, None, None) == 0
    opts = [f"--gpu-architecture=sm_{major}{minor}".encode(), b"--std=c++17", b"--ptxas-options=-v"] + [f"-D{d}".encode() for d in defines]
    arr = (ctypes.c_char_p * len(opts))(*opts)
    r = nvrtc.nvrtcCompileProgram(prog, len(opts), arr)
    size = ctypes.c_size_t(); nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value); nvrtc.nvrtcGetProgramLog(prog, log)
    if r != 0:
        raise RuntimeError(log.value.decode())
    regs = [l for l in log.value.decode().splitlines() if 'registers' in l]
    nvrtc.nvrtcGetCUBINSize(prog, ctypes.byref(size))
    cubin = ctypes.create_string_buffer(size.value); nvrtc.nvrtcGetCUBIN(prog, cubin)
    mod = ctypes.c_void_p()
    assert cuda.cuModuleLoadData(ctypes.byref(mod), cubin) == 0
    fns = {}
    for n in ("decode_attention_partial", "decode_attention_combine"):
        f = ctypes.c_void_p(); assert cuda.cuModuleGetFunction(ctypes.byref(f), mod, n.encode()) == 0
        fns[n] = f
    return fns, regs

def launch(f, grid, block, args, smem=0):
    vals = [a if isinstance(a, ctypes._SimpleCData) else a for a in args]
    ptrs = (ctypes.c_void_p * len(vals))(*[ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v in vals])
    stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
    r = cuda.cuLaunchKernel(f, grid[0], grid[1], grid[2], block[0], 1, 1, smem, stream, ptrs, None)
    assert r == 0, r

P = lambda t: ctypes.c_void_p(t.data_ptr())
def run(fns, q, keys, values, positions, chunk, threads, new=False):
    rows, heads, dim = q.shape
    kv_heads, capacity = keys.shape[1], keys.shape[2]
    if new:
        splits, chunk = chunk
    else:
        splits = (capacity + chunk - 1) // chunk
    partial = torch.empty(rows, heads, splits, dim, device='cuda', dtype=torch.float32)
    stats = torch.empty(rows, heads, splits, 2, device='cuda', dtype=torch.float32)
    out = torch.empty(rows, heads, dim, device='cuda', dtype=q.dtype)
    def go():
        launch(fns["decode_attention_partial"], (rows, kv_heads, splits), (threads,),
               [P(q), P(keys), P(values), P(positions), ctypes.c_longlong(1), P(partial), P(stats), P(out),
                ctypes.c_int(heads), ctypes.c_int(kv_heads), ctypes.c_longlong(capacity), ctypes.c_int(chunk),
                ctypes.c_float(1 / math.sqrt(dim))])
        if splits > 1 and new:
            launch(fns["decode_attention_combine"], (rows * heads, 1, 1), (dim,), [P(partial), P(stats), P(out), P(positions), ctypes.c_longlong(1), ctypes.c_int(heads), ctypes.c_longlong(capacity), ctypes.c_int(chunk), ctypes.c_int(splits)])
        elif splits > 1:
            launch(fns["decode_attention_combine"], (rows * heads, 1, 1), (dim,), [P(partial), P(stats), P(out), ctypes.c_int(splits)])
    return go, out

def reference(q, keys, values, positions):
    rows, heads, dim = q.shape; kv = keys.shape[1]; g = heads // kv
    out = torch.empty(rows, heads, dim, device='cuda', dtype=torch.float32)
    for r in range(rows):
        L = int(positions[r]) + 1
        k = keys[r, :, :L].float().repeat_interleave(g, 0); v = values[r, :, :L].float().repeat_interleave(g, 0)
        s = torch.einsum('hd,hld->hl', q[r].float(), k) / math.sqrt(dim)
        out[r] = torch.einsum('hl,hld->hd', s.softmax(-1), v)
    return out

def timed(go, reps=200):
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        go(); torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, stream=s):
            for _ in range(reps): go()
    g.replay(); torch.cuda.synchronize()
    best = 1e9
    for _ in range(5):
        a = torch.cuda.Event(enable_timing=True); b = torch.cuda.Event(enable_timing=True)
        a.record(); g.replay(); b.record(); torch.cuda.synchronize()
        best = min(best, a.elapsed_time(b) * 1000 / reps)
    return best

big = torch.empty(256 * 2**20, dtype=torch.uint8, device='cuda'); big2 = torch.empty_like(big)
copy_us = timed(lambda: big2.copy_(big), 20); copy_rate = 2 * big.numel() / copy_us / 1e3  # GB/s
del big, big2
sms = torch.cuda.get_device_properties(0).multi_processor_count
print(json.dumps({"gpu": torch.cuda.get_device_name(), "copy_gb_s": round(copy_rate), "sms": sms}), flush=True)
compiled = {}
for case in json.loads(os.environ["CASES"]):
    rows, heads, kv_heads, dim, capacity = case["shape"]
    v = case.get("variant", {"name": "base"})
    new = case.get("src", "old") == "new"
    key = (v["name"], dim, new)
    if key not in compiled:
        src = SOURCES["new" if new else "old"]
        for a, b in v.get("replace", []):
            assert a in src, a
            src = src.replace(a, b)
        compiled[key] = compile_(src, [f"PEIRCE_HEAD_DIM={dim}"] + v.get("defines", []))[0]
    fns = compiled[key]
    torch.manual_seed(0)
    q = torch.randn(rows, heads, dim, device='cuda', dtype=torch.bfloat16)
    keys = torch.randn(rows, kv_heads, capacity, dim, device='cuda', dtype=torch.bfloat16)
    values = torch.randn(rows, kv_heads, capacity, dim, device='cuda', dtype=torch.bfloat16)
    # Copies of the cache enough to exceed L2 (50 MB on an H100) several times over, taken in
    # turn, so that each launch reads its keys from memory as a decoding step does.
    per_copy = 2 * keys.numel() * 2
    copies = [(keys, values)] + [(keys.clone(), values.clone()) for _ in range(max(0, min(7, -(-200 * 2**20 // per_copy) - 1)))]
    for chunk in case["chunks"]:
        res = {"shape": case["shape"], "src": "new" if new else "old", "chunk": chunk, "splits": chunk[0] if new else (capacity + chunk - 1) // chunk}
        if case.get("check", True):
            pos = torch.randint(0, capacity, (rows,), device='cuda', dtype=torch.long); pos[0] = capacity - 1; pos[-1] = 0
            go, out = run(fns, q, keys, values, pos, chunk, 128, new); go(); torch.cuda.synchronize()
            ref = reference(q, keys, values, pos)
            res["err"] = [round((out.float() - ref).abs().max().item(), 5), round((ref.bfloat16().float() - ref).abs().max().item(), 5)]
        for L in case["lengths"]:
            pos = torch.full((rows,), L - 1, device='cuda', dtype=torch.long)
            gos = [run(fns, q, k, v, pos, chunk, 128, new)[0] for k, v in copies]
            counter = [0]
            def go():
                gos[counter[0] % len(gos)](); counter[0] += 1
            reps = max(len(gos), min(200, int(2e5 / L)) // len(gos) * len(gos))
            us = timed(go, reps)
            kv_bytes = 2 * rows * kv_heads * L * dim * 2
            res[f"L{L}"] = [round(us, 2), round(kv_bytes / (us * 1e-6) / 1e9 / copy_rate, 3)]
        print(json.dumps(res), flush=True)
    del q, keys, values, copies

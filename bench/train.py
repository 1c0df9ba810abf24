"""Training and inference throughput per architecture: slices/s at 256 px, channels-last on and off, on this CPU —
and on a GPU with mixed precision when one is present.

    python bench/train.py [--archs resnet50,mobilenetv2_100,efficientnet_b2] [--size 256] [--bs 16] [--steps 3]

Untrained weights and random inputs: the figure is the cost of a step (forward + backward + RAdam update, or
forward only), which does not depend on the data. Baseline in the same run: the same model without channels-last.
"""
import argparse, time, warnings
import torch, timm
from fastai.optimizer import RAdam
warnings.filterwarnings('ignore')

def step_rate(model, x, y, train:bool, steps:int, amp:bool) -> float:
    "Slices per second over `steps` steps after one warm-up step."
    opt = RAdam(list(model.parameters()), lr=1e-3) if train else None
    model.train(train)
    def one():
        with torch.autocast('cuda', enabled=amp), torch.set_grad_enabled(train):
            out = model(x)
            if train:
                loss = torch.nn.functional.binary_cross_entropy_with_logits(out.float(), y)
                loss.backward(); opt.step(); opt.zero_grad()
        if x.is_cuda: torch.cuda.synchronize()
    one()
    t = time.perf_counter()
    for _ in range(steps): one()
    return steps * len(x) / (time.perf_counter() - t)

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--archs', default='resnet50,mobilenetv2_100,efficientnet_b2')
    ap.add_argument('--size', type=int, default=256); ap.add_argument('--bs', type=int, default=16)
    ap.add_argument('--steps', type=int, default=3)
    a = ap.parse_args()
    dev = 'cuda' if torch.cuda.is_available() else 'cpu'
    amp = dev == 'cuda'
    print(f"device: {torch.cuda.get_device_name() if amp else f'CPU, {torch.get_num_threads()} threads'}; "
          f"{a.size} px, batch {a.bs}, {a.steps} timed steps{', AMP' if amp else ''}")
    rows = []
    for arch in a.archs.split(','):
        for cl in (False, True):
            model = timm.create_model(arch, pretrained=False, num_classes=6).to(dev)
            x = torch.randn(a.bs, 3, a.size, a.size, device=dev); y = torch.rand(a.bs, 6, device=dev).round()
            if cl: model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
            tr = step_rate(model, x, y, True, a.steps, amp)
            inf = step_rate(model, x, y, False, a.steps, amp)
            mem = torch.cuda.max_memory_allocated() / 2**30 if amp else float('nan')
            rows.append((arch, cl, tr, inf, mem))
            print(f"  {arch:18s} channels_last={'on ' if cl else 'off'}  train {tr:8.1f}  infer {inf:8.1f} slices/s"
                  + (f"  peak {mem:.1f} GiB" if amp else ''), flush=True)
    print("ratios, channels-last on / off (train, infer):")
    for arch in a.archs.split(','):
        off, on = [r for r in rows if r[0] == arch]
        print(f"  {arch:18s} {on[2]/off[2]:.2f}x  {on[3]/off[3]:.2f}x")

if __name__ == '__main__': main()

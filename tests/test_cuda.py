"""The library on a GPU: the same results as on the CPU, bf16 autocast, a training step, and the CPU-side memory
count (`benchmarks/common.py`'s `tensor_peak_mode`) against CUDA's own allocator figure.

Skipped without CUDA. `DEEPSEE_TEST_DEVICE=cpu pytest tests/test_cuda.py` runs the same checks on the CPU (all but
the allocator comparison), which keeps them honest on machines without a GPU."""
import json, os, sys
from pathlib import Path
import pytest, torch

from deepsee.core import preset
from deepsee.data import procedural_face
from deepsee.explore import random_model, samples, upscale

DEVICE = os.environ.get('DEEPSEE_TEST_DEVICE', 'cuda')
pytestmark = pytest.mark.skipif(DEVICE.startswith('cuda') and not torch.cuda.is_available(),
                                reason='no CUDA device (DEEPSEE_TEST_DEVICE=cpu runs these checks on the CPU)')


def _inputs(model, n: int = 2):
    c = model.cfg
    labels = torch.stack([torch.from_numpy(procedural_face(c.hr_size, 7 + i)[1].astype('int64')) for i in range(n)])
    g = torch.Generator().manual_seed(0)
    lr = torch.rand(n, 3, c.lr_size, c.lr_size, generator=g) * 2 - 1
    style = torch.rand(n, 19, c.encoder.style_dim, generator=g) * 2 - 1
    return lr, labels, style


def test_generator_matches_cpu():
    "The generator on DEVICE gives the CPU's output (float32), and bf16 autocast stays within bf16 noise of it."
    cpu = random_model('tiny', seed=1, segmenter=False)
    dev = random_model('tiny', seed=1, segmenter=False, device=DEVICE)
    lr, labels, style = _inputs(cpu)
    with torch.no_grad():
        ref = cpu.generator(lr, labels, style)
        out = dev.generator(lr.to(DEVICE), labels.to(DEVICE), style.to(DEVICE)).cpu()
        with torch.autocast(torch.device(DEVICE).type, dtype=torch.bfloat16):
            half = dev.generator(lr.to(DEVICE), labels.to(DEVICE), style.to(DEVICE)).float().cpu()
    assert (out - ref).abs().max() < 1e-4, (out - ref).abs().max()
    assert (half - ref).abs().max() < 0.05 and (half - ref).abs().mean() < 0.005, (half - ref).abs().max()


def test_samples_seeded_on_device():
    "`samples` on DEVICE: the same seed gives the same images, another seed other ones; close to the CPU's."
    cpu = random_model('tiny', seed=2, segmenter=False)
    dev = random_model('tiny', seed=2, segmenter=False, device=DEVICE)
    lr, labels, style = _inputs(cpu, 1)
    kw = dict(n=4, delta=0.2, mask=labels, style=style)
    a, b = samples(dev, lr.to(DEVICE), seed=3, **kw).image, samples(dev, lr.to(DEVICE), seed=3, **kw).image
    c = samples(dev, lr.to(DEVICE), seed=4, **kw).image
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (a.cpu() - samples(cpu, lr, seed=3, **kw).image).abs().max() < 1e-4
    assert upscale(dev, lr.to(DEVICE), labels, style=style, bf16=True).image.dtype == torch.float32


@pytest.mark.parametrize('ckpt', [False, True])
def test_train_step_on_device(tmp_path, ckpt):
    "One training iteration on DEVICE under its default precision ('auto': bf16 autocast on CUDA), with and without checkpointing."
    from deepsee.training import Trainer
    tr = Trainer(preset('tiny', lr_size=8, factor=4), 'synthetic:4', tmp_path / 'run', max_steps=4, no_vgg=True, batch_size=2,
                 device=DEVICE, grad_checkpointing=ckpt, progress=False, n_val=0, tensorboard=False)
    b = torch.utils.data.default_collate([tr.train_ds[i] for i in range(2)])
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    losses = tr.train_step(b)
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values()), losses
    assert any(not torch.equal(v, tr.model.state_dict()[k]) for k, v in before.items())
    assert all(p.device.type == torch.device(DEVICE).type for p in tr.model.parameters())
    tr.close()


def test_tensor_count_matches_cuda_allocator(tmp_path):
    """The CPU sizing of GPU memory (`train_step.py --tensor-peak`): on CUDA the dispatch-mode count of live tensor
    bytes over a training step is close to the caching allocator's max-allocated figure (which also holds cuDNN
    workspaces and rounds sizes up)."""
    if not DEVICE.startswith('cuda'): pytest.skip('compares with the CUDA allocator')
    sys.path.insert(0, str(Path(__file__).parents[1] / 'benchmarks'))
    from common import tensor_peak_mode
    from deepsee.training import Trainer
    tr = Trainer(preset('tiny'), 'synthetic:4', tmp_path / 'run', max_steps=4, no_vgg=True, batch_size=4, device=DEVICE,
                 progress=False, n_val=0, tensorboard=False)
    b = {k: v.to(DEVICE) for k, v in torch.utils.data.default_collate([tr.train_ds[i] for i in range(4)]).items()
         if isinstance(v, torch.Tensor)}
    tr.train_step(b)                           # Adam moments and gradients exist, as in a long run
    torch.cuda.synchronize(); base = torch.cuda.memory_allocated(); torch.cuda.reset_peak_memory_stats()
    with tensor_peak_mode() as count:
        tr.train_step(b)
    torch.cuda.synchronize()
    cuda_peak = torch.cuda.max_memory_allocated() - base
    print(json.dumps({'counted_mib': count.peak / 2**20, 'cuda_mib': cuda_peak / 2**20}))
    assert 0.8 * cuda_peak <= count.peak <= 1.1 * cuda_peak, (count.peak, cuda_peak)
    tr.close()

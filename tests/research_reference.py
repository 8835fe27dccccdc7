"""Research-format checkpoints of any size, and a direct forward pass of the research networks' arithmetic.

For the converter's tests beyond the shipped fixture (32x with its pure-SEAN block above max_fm_size, guided,
256 px, other widths). Written from the paper, the supplementary and the checkpoint format described in
tests/fixtures/research-checkpoint/README.md as plain formulas (functional convolutions on the state dict): no
code of the research project. The fixture (made by the research networks themselves) anchors it: the first test
checks this reference against the research outputs stored there.
"""
from __future__ import annotations
import math
import torch
import torch.nn.functional as F

N = 19


# --- checkpoints in the research format ------------------------------------------------------------------------------
def _sn(sd: dict, prefix: str, cout: int, cin: int, k: int, g: torch.Generator, bias: bool = True) -> None:
    "An old-style spectral-norm conv: weight_orig, weight_u, weight_v (and bias)."
    w = torch.randn(cout, cin, k, k, generator=g) * (1.0 / math.sqrt(cin * k * k))
    u, m = F.normalize(torch.randn(cout, generator=g), dim=0), w.reshape(cout, -1)
    for _ in range(30):                                  # stored vectors near the top singular pair, as after training
        v = F.normalize(m.t() @ u, dim=0); u = F.normalize(m @ v, dim=0)
    sd[f'{prefix}.weight_orig'], sd[f'{prefix}.weight_u'], sd[f'{prefix}.weight_v'] = w, u, v
    if bias: sd[f'{prefix}.bias'] = torch.randn(cout, generator=g) * 0.1


def _conv(sd: dict, prefix: str, cout: int, cin: int, k: int, g: torch.Generator, scale: float = 1.0) -> None:
    sd[f'{prefix}.weight'] = torch.randn(cout, cin, k, k, generator=g) * (scale / math.sqrt(cin * k * k))
    sd[f'{prefix}.bias'] = torch.randn(cout, generator=g) * 0.1


def _norm(sd: dict, prefix: str, kind: str, C: int, style: int, g: torch.Generator, hidden: int = 128) -> None:
    sd[f'{prefix}.param_free_norm.running_mean'] = torch.randn(C, generator=g) * 0.2
    sd[f'{prefix}.param_free_norm.running_var'] = torch.rand(C, generator=g) + 0.5
    sd[f'{prefix}.param_free_norm.num_batches_tracked'] = torch.tensor(1000)
    _conv(sd, f'{prefix}.mlp_shared.0', hidden, N, 3, g)
    if kind in ('spade', 'sean'):
        _conv(sd, f'{prefix}.mlp_gamma', C, hidden, 3, g, 0.3); _conv(sd, f'{prefix}.mlp_beta', C, hidden, 3, g, 0.3)
    if kind in ('sean', 'pure'):
        sd[f'{prefix}.style_conv.weight'] = torch.randn(N, N, 1, generator=g)
        sd[f'{prefix}.style_conv.bias'] = torch.randn(N, generator=g)
        _conv(sd, f'{prefix}.mlp_style_gamma', C, style, 3, g, 0.3); _conv(sd, f'{prefix}.mlp_style_beta', C, style, 3, g, 0.3)
        if kind == 'pure': sd[f'{prefix}.mlp_style_gamma.bias'] += 1.0     # pure SEAN has no "1 +": a gain near 1
    if kind == 'sean':
        sd[f'{prefix}.alpha_beta'] = torch.rand(1, generator=g) * 2 - 1
        sd[f'{prefix}.alpha_gamma'] = torch.rand(1, generator=g) * 2 - 1


def research_generator(factor: int, ngf: int, style: int, crop: int, noise: bool, seed: int = 0) -> dict:
    "A research-format generator state dict: head_0 SPADE, SEAN blocks, pure SEAN from the 4th up-block at >= 512 px."
    g = torch.Generator().manual_seed(seed)
    C, n_blocks = 16 * ngf, int(math.log2(factor))
    sd = {}
    _conv(sd, 'initial', C, 3, 3, g, 0.5)
    names = ['head_0', 'G_middle_0', 'G_middle_1'] + [f'up_list.{i}' for i in range(n_blocks - 1)]
    for j, b in enumerate(names):
        kind = 'spade' if j == 0 else 'pure' if (crop >= 512 and j - 3 >= 3) else 'sean'
        _sn(sd, f'{b}.conv_0', C, C, 3, g); _sn(sd, f'{b}.conv_1', C, C, 3, g)
        for k in (0, 1): _norm(sd, f'{b}.norm_{k}', kind, C, style, g)
        if noise:
            for n in ('noise_in', 'noise_skip', 'noise_middle'): sd[f'{b}.{n}.weight'] = torch.randn(C, generator=g)
    _conv(sd, 'conv_img', 3, C, 3, g, 0.05)                                # outputs well inside tanh's range
    return sd


def research_encoder(nef: int, style: int, guided: bool, seed: int = 1) -> dict:
    "A research-format style encoder: combined (mini + full, independent) or full only (guided)."
    g = torch.Generator().manual_seed(seed)
    sd = {'noise_weights': torch.randn(N, generator=g)}
    w = (nef, 2 * nef, 4 * nef, 8 * nef)
    full = {'initial.0.0': (w[0], 3), 'down0.0.0': (w[1], w[0]), 'down1.0.0': (w[2], w[1]), 'up_conv.1.0': (w[3], w[2])}
    mini = {'initial.0.0': (w[0], 3), 'conv0.0.0': (w[1], w[0]), 'conv1.0.0': (w[2], w[1]), 'conv2.1.0': (w[3], w[2])}
    pre = '' if guided else 'encoder_full.'
    for k, (o, i) in full.items(): _sn(sd, pre + k, o, i, 3, g, bias=False)
    if not guided:
        for k, (o, i) in mini.items(): _sn(sd, 'encoder_mini.' + k, o, i, 3, g, bias=False)
        for sub in ('encoder_full', 'encoder_mini'): _sn(sd, f'{sub}.final.0.0', style, w[3], 3, g, bias=False)
    _sn(sd, 'final.0.0', style, w[3], 3, g, bias=False)
    return sd


def research_discriminator(ndf: int = 8, n_layers: int = 4, num_D: int = 2, seed: int = 2) -> dict:
    "A research-format multi-scale discriminator: a plain first conv, spectral-norm convs + IN, a plain last conv."
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for d in range(num_D):
        p = f'discriminator_{d}.model'
        _conv(sd, f'{p}0.0', ndf, N + 3, 4, g)
        nf = ndf
        for i in range(1, n_layers):
            _sn(sd, f'{p}{i}.0.0', min(nf * 2, 512), nf, 4, g, bias=False); nf = min(nf * 2, 512)
        _conv(sd, f'{p}{n_layers}.0', 1, nf, 4, g)
    return sd


def save_research(folder, G: dict, E: dict | None = None, D: dict | None = None, opt: dict | None = None) -> None:
    "Write `latest_net_{G,E,D}.pth` ({'model': state_dict}) and opt.txt as the research code does."
    from pathlib import Path
    folder = Path(folder); folder.mkdir(parents=True, exist_ok=True)
    for name, sd in (('G', G), ('E', E), ('D', D)):
        if sd is not None: torch.save({'model': sd}, folder / f'latest_net_{name}.pth')
    if opt is not None:
        (folder / 'opt.txt').write_text(''.join('{:>25}: {:<30}\n'.format(k, str(v)) for k, v in opt.items()))


# --- the research networks' arithmetic, eval mode -------------------------------------------------------------------
def _w(sd: dict, p: str) -> torch.Tensor:
    "A conv weight: spectral-normed (weight_orig / (u . W v)) or plain."
    if f'{p}.weight_orig' not in sd: return sd[f'{p}.weight']
    w, u, v = sd[f'{p}.weight_orig'], sd[f'{p}.weight_u'], sd[f'{p}.weight_v']
    return w / torch.dot(u, w.reshape(w.shape[0], -1) @ v)


def _c(x, sd, p, pad=1):
    return F.conv2d(x, _w(sd, p), sd.get(f'{p}.bias'), padding=pad)


def _norm_fwd(x, seg, z, sd, p, max_fm):
    "SPADE / SEAN / pure SEAN: the research normalisation, with its max_fm_size behaviour above 256 px."
    xn = (x - sd[f'{p}.param_free_norm.running_mean'].view(1, -1, 1, 1)) / torch.sqrt(
        sd[f'{p}.param_free_norm.running_var'].view(1, -1, 1, 1) + 1e-5)
    H = x.shape[-1]
    fm = min(H, max_fm) if f'{p}.mlp_style_gamma.weight' in sd else H       # SPADE (head_0) has no cap
    s = F.interpolate(seg, size=(fm, fm), mode='nearest')
    actv = F.relu(_c(s, sd, f'{p}.mlp_shared.0'))
    if f'{p}.mlp_style_gamma.weight' not in sd:
        return xn * (1 + _c(actv, sd, f'{p}.mlp_gamma')) + _c(actv, sd, f'{p}.mlp_beta')
    smap = torch.einsum('bnd,bnhw->bdhw', z, s)                                 # every pixel: its region's style row
    if fm != H:
        actv = F.interpolate(actv, size=(H, H), mode='nearest')
        smap = actv                                                             # the research code's behaviour
    gs, bs = _c(smap, sd, f'{p}.mlp_style_gamma'), _c(smap, sd, f'{p}.mlp_style_beta')
    if f'{p}.mlp_gamma.weight' not in sd: return xn * gs + bs                  # pure SEAN
    ag, ab = torch.sigmoid(sd[f'{p}.alpha_gamma']), torch.sigmoid(sd[f'{p}.alpha_beta'])
    g, b = _c(actv, sd, f'{p}.mlp_gamma'), _c(actv, sd, f'{p}.mlp_beta')
    return xn * (ag * gs + (1 - ag) * g + 1) + ab * bs + (1 - ab) * b


def generator_forward(sd: dict, lr: torch.Tensor, labels: torch.Tensor, z: torch.Tensor, max_fm: int = 256) -> torch.Tensor:
    "G(lr, one_hot(labels), z) of a research-format generator state dict, eval mode (no noise)."
    seg = F.one_hot(labels.long(), N).permute(0, 3, 1, 2).float()
    names = ['head_0', 'G_middle_0', 'G_middle_1'] + sorted({k.split('.')[0] + '.' + k.split('.')[1] for k in sd
                                                            if k.startswith('up_list.')}, key=lambda s: int(s.split('.')[1]))
    x = _c(lr, sd, 'initial')
    for j, b in enumerate(names):
        if j == 1 or j >= 3: x = F.interpolate(x, scale_factor=2, mode='nearest')
        dx = _c(F.leaky_relu(_norm_fwd(x, seg, z, sd, f'{b}.norm_0', max_fm), 0.2), sd, f'{b}.conv_0')
        dx = _c(F.leaky_relu(_norm_fwd(dx, seg, z, sd, f'{b}.norm_1', max_fm), 0.2), sd, f'{b}.conv_1')
        x = x + dx
    return torch.tanh(_c(F.leaky_relu(x, 0.2), sd, 'conv_img'))


def encoder_forward(sd: dict, image: torch.Tensor, labels: torch.Tensor, mode: str) -> torch.Tensor:
    "The research style matrix (B,19,d): 'mini' (LR image) or 'full' (HR image); sum over a region / (h*w)."
    guided = 'initial.0.0.weight_orig' in sd
    pre = '' if guided else ('encoder_mini.' if mode == 'mini' else 'encoder_full.')
    layers = (['initial.0.0', 'conv0.0.0', 'conv1.0.0', 'conv2.1.0'] if mode == 'mini'
              else ['initial.0.0', 'down0.0.0', 'down1.0.0', 'up_conv.1.0'])
    strides = [1, 1, 1, 1] if mode == 'mini' else [1, 2, 2, 1]
    x = image
    for i, (l, s) in enumerate(zip(layers, strides)):
        if i == 3: x = F.interpolate(x, scale_factor=2, mode='nearest')
        x = F.leaky_relu(F.instance_norm(F.conv2d(x, _w(sd, pre + l), None, s, 1)), 0.2)
    x = torch.tanh(F.instance_norm(F.conv2d(x, _w(sd, 'final.0.0'), None, 1, 1)))
    seg = F.interpolate(F.one_hot(labels.long(), N).permute(0, 3, 1, 2).float(), size=x.shape[-2:], mode='nearest')
    return torch.einsum('bdhw,bnhw->bnd', x, seg) / (x.shape[-2] * x.shape[-1])


def discriminator_forward(sd: dict, image: torch.Tensor, labels: torch.Tensor) -> list[list[torch.Tensor]]:
    "Every layer's output of every scale; the research input is cat(one_hot(mask), image)."
    x = torch.cat([F.one_hot(labels.long(), N).permute(0, 3, 1, 2).float(), image], 1)
    out, d = [], 0
    while f'discriminator_{d}.model0.0.weight' in sd:
        p, h, feats = f'discriminator_{d}.model', x, []
        h = F.leaky_relu(F.conv2d(h, sd[f'{p}0.0.weight'], sd[f'{p}0.0.bias'], 2, 2), 0.2); feats.append(h)
        i = 1
        while f'{p}{i}.0.0.weight_orig' in sd:
            stride = 2 if f'{p}{i + 1}.0.0.weight_orig' in sd else 1           # the last of them keeps the size
            h = F.leaky_relu(F.instance_norm(F.conv2d(h, _w(sd, f'{p}{i}.0.0'), None, stride, 2)), 0.2); feats.append(h)
            i += 1
        feats.append(F.conv2d(h, sd[f'{p}{i}.0.weight'], sd[f'{p}{i}.0.bias'], 1, 2))
        out.append(feats)
        x = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
        d += 1
    return out

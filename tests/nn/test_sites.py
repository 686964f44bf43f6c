"""droplab.nn.dropout_sites / insert_dropout on models a user writes: a torchvision-style ResNet
(BasicBlock written here; torchvision is not a dependency) and a small transformer encoder."""

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import droplab.nn as dn
from droplab.errors import ConfigError


def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock, as written there (self.relu is called twice)."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class TinyResNet(nn.Module):
    def __init__(self, n_classes=3):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
        down = nn.Sequential(nn.Conv2d(8, 16, 1, stride=2, bias=False), nn.BatchNorm2d(16))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, 2, down), BasicBlock(16, 16))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, n_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class EncoderLayer(nn.Module):
    def __init__(self, d=16, heads=2):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.ff(self.norm2(x))


class TinyTransformer(nn.Module):
    def __init__(self, vocab=20, d=16, n_layers=2, n_classes=2):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList([EncoderLayer(d) for _ in range(n_layers)])
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, n_classes)

    def forward(self, tokens):
        x = self.embed(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x).mean(1))


RESNET_SITES = {
    "after:relu": "activation",
    "after:layer1.0": "block",
    "after:layer1.0.relu": "activation",
    "after:layer1.1": "block",
    "after:layer1.1.relu": "activation",
    "after:layer2.0": "block",
    "after:layer2.0.relu": "activation",
    "after:layer2.1": "block",
    "after:layer2.1.relu": "activation",
    "before:fc": "head",
}
TRANSFORMER_SITES = {
    "after:layers.0": "block",
    "after:layers.0.ff.1": "activation",
    "after:layers.1": "block",
    "after:layers.1.ff.1": "activation",
    "before:head": "head",
}


def test_resnet_sites_are_named_by_module_path():
    assert dn.dropout_sites(TinyResNet()) == RESNET_SITES
    assert list(dn.dropout_sites(TinyResNet())) == list(RESNET_SITES)  # module order, head last


def test_transformer_sites_are_named_by_module_path():
    assert dn.dropout_sites(TinyTransformer()) == TRANSFORMER_SITES


def test_sites_of_a_plain_sequential_and_of_a_model_without_any():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    assert dn.dropout_sites(net) == {"after:1": "activation", "after:3": "activation", "before:4": "head"}
    assert dn.dropout_sites(nn.Linear(3, 1)) == {}
    # two ReLUs side by side are activations, not blocks
    assert "block" not in dn.dropout_sites(nn.Sequential(nn.ReLU(), nn.ReLU())).values()


def test_insert_keeps_state_dict_keys_and_sites():
    torch.manual_seed(0)
    net = TinyResNet()
    keys = list(net.state_dict())
    dn.insert_dropout(net, {"after:layer1.0": 0.1, "after:layer2.1.relu": 0.2, "before:fc": 0.3})
    assert list(net.state_dict()) == keys  # pretrained weights still load
    assert dn.dropout_sites(net) == RESNET_SITES  # inserted layers add no sites
    assert net.layer1[0].dropout_after.p == 0.1
    assert net.fc.dropout_before.p == 0.3
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 3)


def test_inserted_layers_act_where_the_sites_say():
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    dn.insert_dropout(net, {"after:1": 0.5, "before:2": 0.5})
    seen = {}
    net[1].dropout_after.register_forward_hook(lambda m, i, o: seen.update(after=(i[0], o)))
    net[2].dropout_before.register_forward_hook(lambda m, i, o: seen.update(before=o))
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    net(x)
    relu_out, dropped = seen["after"]
    assert bool((relu_out >= 0).all())  # the ReLU's output is what gets dropped
    assert bool(((dropped == 0) | torch.isclose(dropped, 2 * relu_out)).all())
    assert (dropped == 0).sum() > (relu_out == 0).sum()
    assert seen["before"] is not None


def test_eval_mode_and_rate_zero_leave_the_output_unchanged():
    torch.manual_seed(0)
    plain = TinyTransformer()
    net = dn.insert_dropout(copy.deepcopy(plain), dict.fromkeys(TRANSFORMER_SITES, 0.5))
    tokens = torch.randint(0, 20, (4, 7))
    assert torch.allclose(net.eval()(tokens), plain.eval()(tokens))
    zero = dn.insert_dropout(copy.deepcopy(plain).train(), dict.fromkeys(TRANSFORMER_SITES, 0.0))
    assert torch.allclose(zero(tokens), plain.train()(tokens))
    trained = net.train()(tokens)
    assert not torch.allclose(trained, plain(tokens))


def test_inserting_twice_replaces_and_deepcopy_and_pickle_keep_it():
    net = TinyResNet()
    dn.insert_dropout(net, {"before:fc": 0.2})
    dn.insert_dropout(net, {"before:fc": 0.4})
    assert net.fc.dropout_before.p == 0.4
    assert len(net.fc._forward_pre_hooks) == 1
    clone = copy.deepcopy(net)
    assert clone.fc.dropout_before is not net.fc.dropout_before
    clone.fc.dropout_before.p = 0.0
    clone.eval()
    assert not clone.fc.dropout_before.training and net.fc.dropout_before.training
    buf = io.BytesIO()
    torch.save(net, buf)
    buf.seek(0)
    again = torch.load(buf, weights_only=False)
    assert again.fc.dropout_before.p == 0.4


def test_custom_layer_factory():
    net = dn.insert_dropout(TinyResNet(), {"after:layer1.0": 0.2}, layer=dn.SpatialDropout)
    assert type(net.layer1[0].dropout_after) is dn.SpatialDropout
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 3)


def test_unknown_site_is_refused_with_the_valid_ones():
    net = TinyResNet()
    with pytest.raises(ConfigError, match=r"unknown dropout site 'after:layer1\.0\.rleu' \(did you mean 'after:layer1\.0\.relu'\?\); sites of this model: after:relu, after:layer1\.0,"):
        dn.insert_dropout(net, {"after:layer1.0.rleu": 0.1})
    with pytest.raises(ConfigError, match="sites of this model: none"):
        dn.insert_dropout(nn.Linear(2, 2), {"before:fc": 0.1})


def test_bad_rate_and_bad_arguments_are_refused_before_any_insert():
    net = TinyResNet()
    with pytest.raises(ConfigError, match=r"p must be in \[0, 1\), got 1\.5"):
        dn.insert_dropout(net, {"before:fc": 0.1, "after:relu": 1.5})
    assert not hasattr(net.fc, "dropout_before")
    with pytest.raises(ConfigError, match="rates must be a mapping site -> rate, got list"):
        dn.insert_dropout(net, [("before:fc", 0.1)])
    with pytest.raises(ConfigError, match="dropout_sites expects an nn.Module, got str"):
        dn.dropout_sites("resnet")


@pytest.mark.parametrize("model", [TinyResNet, TinyTransformer])
def test_sites_model_trains_a_step(model):
    torch.manual_seed(0)
    net = model()
    sites = dn.dropout_sites(net)
    dn.insert_dropout(net, dict.fromkeys(sites, 0.2))
    x = torch.randn(4, 1, 8, 8) if model is TinyResNet else torch.randint(0, 20, (4, 5))
    loss = F.cross_entropy(net(x), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    assert torch.isfinite(loss)


def test_existing_dropout_layers_are_at_sites_and_replaced_by_name():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 8),
                        nn.Dropout2d(0.1), nn.Linear(8, 2))
    sites = dn.dropout_sites(net)
    assert sites == {"after:1": "activation", "at:2": "dropout", "at:4": "dropout", "before:5": "head"}
    assert dn.dropout_sites(dn.convert(net)) == sites  # the same names after convert
    net.eval()
    dn.insert_dropout(net, {"at:2": 0.5})
    assert type(net[2]) is dn.Dropout and net[2].p == 0.5 and not net[2].training
    assert len(net) == 6  # replaced, not added


def test_modules_wrapped_by_droplab_layers_are_not_sites():
    net = nn.Sequential(dn.DropConnect(nn.Linear(4, 4), 0.2), nn.ReLU(), nn.Linear(4, 2))
    assert dn.dropout_sites(net) == {"after:1": "activation", "before:2": "head"}

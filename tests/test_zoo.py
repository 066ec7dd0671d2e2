"""Model zoo: the networks have the published sizes, build deterministically
from a seed, and the registry behaves (unknown names, inputs, kwargs)."""
from __future__ import annotations

import pytest
import torch

from archsim.ir.errors import ArchsimError
from workloads.zoo import MODELS, build, default_input


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name, expected", [
    ("resnet18", 11_689_512),     # torchvision resnet18
    ("resnet50", 25_557_032),     # torchvision resnet50
    ("mobilenetv2", 3_504_872),   # torchvision mobilenet_v2
    ("deit_tiny", 5_717_416),     # timm deit_tiny_patch16_224
    ("resnet20", 272_474),        # He et al. 0.27 M, plus the option-B 1x1 shortcuts
])
def test_parameter_count_matches_published_network(name, expected):
    assert n_params(build(name)) == expected


def test_registry_names():
    assert set(MODELS) == {"resnet18", "resnet20", "resnet50", "mobilenetv2", "deit_tiny", "fmnist_cnn"}


def test_build_is_seeded_and_leaves_global_rng_alone():
    before = torch.get_rng_state()
    a, b, c = build("resnet20", seed=3), build("resnet20", seed=3), build("resnet20", seed=4)
    assert torch.equal(torch.get_rng_state(), before)
    for (k, va), vb, vc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_built_models_are_in_eval_mode():
    assert not build("resnet20").training


def test_default_input_shape_and_seed():
    x = default_input("resnet18", batch=2)
    assert x.shape == (2, 3, 224, 224)
    assert torch.equal(x, default_input("resnet18", batch=2))
    assert not torch.equal(default_input("resnet20", seed=1), default_input("resnet20", seed=0))
    assert default_input("fmnist_cnn").shape == (1, 1, 28, 28)


def test_resnet20_takes_in_ch_and_num_classes():
    model = build("resnet20", in_ch=1, num_classes=7)
    with torch.no_grad():
        y = model(default_input("resnet20", batch=2, in_ch=1))
    assert y.shape == (2, 7)


def test_imagenet_resnet_runs_forward():
    # 32x32 keeps the CPU forward pass fast; adaptive pooling makes it valid.
    # (Every zoo network's graph also runs, on meta tensors, in test_compile.)
    with torch.no_grad():
        y = build("resnet18", num_classes=10)(torch.randn(1, 3, 32, 32))
    assert y.shape == (1, 10)


def test_fmnist_cnn_from_registry():
    with torch.no_grad():
        y = build("fmnist_cnn")(default_input("fmnist_cnn", batch=3))
    assert y.shape == (3, 10)


def test_unknown_model_is_a_user_error():
    with pytest.raises(ArchsimError) as e:
        build("resnet1000")
    assert e.value.field == "model" and "resnet1000" in str(e.value)


def test_pretrained_fmnist_cnn_loads_the_shipped_checkpoint():
    import pytest
    import torch

    from archsim.ir.errors import ArchsimError
    from workloads import zoo
    from workloads.zoo.fmnist_cnn import DEFAULT_CHECKPOINT

    model = zoo.build("fmnist_cnn", pretrained=True)
    state = torch.load(DEFAULT_CHECKPOINT, weights_only=True)
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert not torch.equal(zoo.build("fmnist_cnn").conv1.weight, model.conv1.weight)  # default: random
    with pytest.raises(ArchsimError, match="no trained weights"):
        zoo.build("resnet18", pretrained=True)

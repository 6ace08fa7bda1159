"""The torch adapter on models that no one here wrote: transformers' GPT-2 (Conv1D,
tied head) built from a config, timm-style subclasses of torch.nn layers, layers Lotto
does not know, hand-edited masks, a whole-model rewind and torch.compile."""

from __future__ import annotations

import copy
import io
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from lotto_backends.torch import (
    MagnitudePruneGroup,
    PrunableLinear,
    PrunableModule,
    Pruner,
    RandomPruneGroup,
    dense_layers,
    make_prunable,
    mask_gradients,
    register_prunable,
    remask,
    to_scipy,
)
from lotto_core import prune_count

transformers = pytest.importorskip("transformers")


def _gpt2() -> nn.Module:
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=16, vocab_size=50, n_positions=16)
    return transformers.GPT2LMHeadModel(config)


def _prunable_layers(model: nn.Module) -> list[PrunableModule]:
    return [m for m in model.modules() if isinstance(m, PrunableModule)]


def test_gpt2_is_made_prunable_whole_with_no_warning():
    model = _gpt2()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_prunable(model)
    assert dense_layers(model) == {}
    conv = model.transformer.h[0].attn.c_attn
    assert type(conv).__name__ == "PrunableConv1D"
    assert isinstance(conv, transformers.pytorch_utils.Conv1D)
    assert conv.weight_mask.shape == conv.weight.shape


def test_gpt2_tied_head_has_one_mask_counted_once_and_stays_zero_through_adam():
    model = make_prunable(_gpt2())
    wte, head = model.transformer.wte, model.lm_head
    assert head.weight is wte.weight
    assert hasattr(head, "weight_mask") != hasattr(wte, "weight_mask")  # one layer holds the one mask
    mask = head.parameter_handles()["weight"].get_mask()
    assert mask is wte.parameter_handles()["weight"].get_mask()
    layers = _prunable_layers(model)
    pruner = Pruner([MagnitudePruneGroup(layers, 0.2)], model=model)
    masked = {
        id(h.parameter): h.parameter.numel()
        for m in layers
        for h in m.parameter_handles().values()
        if h.get_mask() is not None
    }
    total = sum(masked.values())  # each parameter once
    pruner.prune()
    report = pruner.report()
    assert report.total == total
    assert report.total - report.kept == prune_count(0.2, total)
    assert sum(1 for row in report.parameters if row.name == "weight" and row.total == 50 * 16) == 1
    kept = mask.clone()
    assert not kept.all()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    ids = torch.randint(0, 50, (2, 8))
    for _ in range(3):
        loss = model(ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert (wte.weight[~kept] == 0).all()  # right after the step, before any forward
    assert torch.equal(mask, kept)


def test_gpt2_conv1d_sparse_layout_is_out_by_in():
    model = make_prunable(_gpt2())
    Pruner([MagnitudePruneGroup(_prunable_layers(model), 0.5)], model=model).prune()
    conv = model.transformer.h[0].mlp.c_fc  # weight (16, 64): (in, out)
    sparse = to_scipy(model)["transformer.h.0.mlp.c_fc.weight"]
    assert sparse.shape == (64, 16)
    np.testing.assert_array_equal(sparse.toarray(), conv.weight.detach().numpy().T)


class LayerNorm2d(nn.LayerNorm):
    """timm's LayerNorm2d: a LayerNorm over the channels of an NCHW tensor."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class BatchNormAct2d(nn.BatchNorm2d):
    """timm's BatchNormAct2d: BatchNorm then an activation, one module."""

    def __init__(self, n):
        super().__init__(n)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(super().forward(x))


def test_subclasses_of_torch_layers_keep_their_own_forward():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), LayerNorm2d(4), BatchNormAct2d(4)).eval()
    x = torch.randn(2, 3, 6, 6)
    expected = model(x)
    make_prunable(model)
    assert [type(m).__name__ for m in model] == ["PrunableConv2d", "PrunableLayerNorm2d", "PrunableBatchNormAct2d"]
    assert isinstance(model[1], LayerNorm2d)
    torch.testing.assert_close(model(x), expected)
    clone = copy.deepcopy(model)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    for other in (clone, loaded):
        assert type(other[2]).__name__ == "PrunableBatchNormAct2d"
        torch.testing.assert_close(other(x), expected)


class Scale(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.gain = nn.Parameter(torch.randn(n))

    def forward(self, x):
        return x * self.gain


class _Unknown(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.gain = nn.Parameter(torch.randn(n))

    def forward(self, x):
        return x * self.gain


def test_unknown_layers_are_named_never_skipped_silently():
    model = nn.Sequential(nn.Linear(4, 4), _Unknown(4))
    with pytest.warns(UserWarning, match=r"left 1 module\(s\) with weights dense: 1: unknown type _Unknown"):
        make_prunable(model)
    assert dense_layers(model) == {"1": "unknown type _Unknown"}
    quiet = nn.Sequential(nn.Linear(4, 4), _Unknown(4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_prunable(quiet, exclude=_Unknown)


def test_a_registered_type_and_selectors():
    register_prunable(Scale, ["gain"])
    model = nn.Sequential(nn.Linear(4, 4), Scale(4), nn.Linear(4, 2))
    make_prunable(model, exclude="2")
    assert [type(m).__name__ for m in model] == ["PrunableLinear", "PrunableScale", "Linear"]
    assert model[1].gain_mask.shape == (4,)
    only = make_prunable(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)), include=lambda name, m: name == "1")
    assert [type(m).__name__ for m in only] == ["Linear", "PrunableLinear"]
    with pytest.raises(TypeError, match="exclude holds 3"):
        make_prunable(nn.Linear(2, 2), exclude=[3])
    with pytest.raises(TypeError, match=r"layer_type must be a torch\.nn\.Module subclass"):
        register_prunable(int, ["x"])
    with pytest.raises(ValueError, match="transposed must name some of parameters"):
        register_prunable(Scale, ["gain"], transposed=["other"])


@pytest.mark.parametrize("how", ["in place", "assigned", "load_state_dict"])
def test_a_mask_edited_by_hand_applies_before_the_next_forward(how):
    torch.manual_seed(0)
    layer = PrunableLinear(4, 3)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[0, 0] = mask[2, 3] = False
    if how == "in place":
        layer.weight_mask[0, 0] = False
        layer.weight_mask[2, 3] = False
    elif how == "assigned":
        layer.weight_mask = mask.clone()
    else:
        layer.load_state_dict({"weight_mask": mask.clone()}, strict=False)
    x = torch.randn(5, 4)
    out = layer(x)
    assert layer.weight[0, 0] == 0
    assert layer.weight[2, 3] == 0
    torch.testing.assert_close(out, nn.functional.linear(x, layer.weight, layer.bias))
    assert Pruner([MagnitudePruneGroup([layer], 0.0)], model=layer).report().kept == 10


def test_an_assigned_mask_of_the_wrong_shape_raises_at_the_forward():
    layer = PrunableLinear(4, 3)
    layer.weight_mask = torch.ones(4, dtype=torch.bool)
    with pytest.raises(ValueError, match="has shape"):
        layer(torch.randn(1, 4))


@pytest.mark.parametrize(
    "bad",
    [
        torch.ones(4, 3, dtype=torch.bool),
        torch.ones(4, dtype=torch.bool),
        torch.ones(1, 4, dtype=torch.bool),
        torch.ones(3, 4, dtype=torch.uint8),
        torch.ones(3, 4, dtype=torch.float32),
        torch.ones(3, 4, dtype=torch.bool, device="meta"),
        np.ones((3, 4), dtype=bool),
        [[True] * 4] * 3,
        None,
    ],
    ids=["transposed", "broadcast", "broadcast-2d", "uint8", "float32", "meta", "numpy", "list", "none"],
)
def test_set_mask_refuses_a_bad_mask_and_changes_nothing(bad):
    torch.manual_seed(0)
    layer = PrunableLinear(4, 3)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    with pytest.raises((TypeError, ValueError), match="mask"):
        layer.parameter_handles()["weight"].set_mask(bad)
    for k, v in layer.state_dict().items():
        assert torch.equal(v, before[k]), k


class _Net(nn.Module):
    """A prunable conv, a BatchNorm, a learned token and a plain head outside any group."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.token = nn.Parameter(torch.zeros(4))
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        h = self.bn(self.conv(x)).mean(dim=(2, 3)) + self.token
        return self.head(h)


def _train_net(model, steps=3):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        x = torch.randn(8, 3, 6, 6)
        loss = nn.functional.cross_entropy(model(x), torch.randint(0, 2, (8,)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_rewind_restores_the_whole_model_and_its_batchnorm_statistics():
    torch.manual_seed(0)
    model = make_prunable(_Net(), include=nn.Conv2d)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    pruner = Pruner([MagnitudePruneGroup([model.conv], 0.5)], model=model)
    _train_net(model)
    pruner.prune_and_rewind()
    mask = model.conv.weight_mask
    for key, value in model.state_dict().items():
        if key == "conv.weight":
            assert torch.equal(value, torch.where(mask, start[key], 0.0))
        elif key != "conv.weight_mask":
            assert torch.equal(value, start[key]), key


def test_rewind_of_the_groups_only_leaves_the_rest_trained():
    torch.manual_seed(0)
    model = make_prunable(_Net(), include=nn.Conv2d)
    pruner = Pruner([MagnitudePruneGroup([model.conv], 0.5)], model=model, rewind="groups")
    _train_net(model)
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    pruner.prune_and_rewind()
    assert torch.equal(model.token, trained["token"])
    assert torch.equal(model.bn.running_mean, trained["bn.running_mean"])


def test_a_late_rewind_point_and_saved_state_cover_the_whole_model():
    torch.manual_seed(0)
    model = make_prunable(_Net(), include=nn.Conv2d)
    pruner = Pruner([MagnitudePruneGroup([model.conv], 0.5)], model=model)
    _train_net(model, 2)
    pruner.set_rewind_point()
    late = {k: v.clone() for k, v in model.state_dict().items()}
    saved = pruner.state_dict()
    _train_net(model, 2)
    pruner.prune()
    pruner.load_state_dict(saved)
    pruner.rewind()
    for key, value in model.state_dict().items():
        assert torch.equal(value, late[key]), key


def test_a_pruner_without_the_model_warns_that_only_groups_rewind():
    model = make_prunable(_Net(), include=nn.Conv2d)
    pruner = Pruner([MagnitudePruneGroup([model.conv], 0.5)])
    with pytest.warns(UserWarning, match="restored only the grouped layers"):
        pruner.prune_and_rewind()
    with pytest.raises(ValueError, match="model does not contain"):
        Pruner([MagnitudePruneGroup([model.conv], 0.5)], model=nn.Linear(2, 2))
    with pytest.raises(ValueError, match="rewind must be"):
        Pruner([MagnitudePruneGroup([model.conv], 0.5)], model=model, rewind="all")


def _graphs(model: nn.Module, *, fullgraph: bool = False, prune_between: bool = False) -> tuple[int, int]:
    """(graphs compiled, graph breaks) over a few training steps."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, backend="eager", fullgraph=fullgraph)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    layers = _prunable_layers(model)
    pruner = Pruner([RandomPruneGroup(layers, 0.3)], model=model) if layers else None
    for step in range(4):
        loss = compiled(torch.randn(4, 8)).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if prune_between and pruner is not None and step == 1:
            pruner.prune()
    return counters["stats"]["unique_graphs"], len(counters["graph_break"])


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))


def test_torch_compile_makes_as_many_graphs_as_for_the_plain_model():
    plain = _graphs(_mlp())
    assert plain[1] == 0
    assert _graphs(make_prunable(_mlp())) == plain
    assert _graphs(make_prunable(_mlp()), fullgraph=True) == plain
    assert _graphs(make_prunable(_mlp()), prune_between=True) == plain  # no recompiles after a prune


def test_under_compile_masks_hold_through_optimizer_steps_and_remask_applies_hand_edits():
    model = make_prunable(_mlp())
    compiled = torch.compile(model, backend="eager")
    Pruner([MagnitudePruneGroup([model[0], model[2]], 0.5)], model=model).prune()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(3):
        loss = compiled(torch.randn(4, 8)).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert (model[0].weight[~model[0].weight_mask] == 0).all()
    model[0].weight_mask[0, :] = False
    remask(model)
    assert (model[0].weight[0] == 0).all()
    assert math.isclose(float(model[0].weight_mask.float().mean()), float((model[0].weight != 0).float().mean()))


def test_masked_gradients_are_zero_where_pruned_and_clipping_sees_only_kept_ones():
    torch.manual_seed(0)
    model = make_prunable(_mlp())
    Pruner([MagnitudePruneGroup([model[0], model[2]], 0.6)], model=model).prune()
    x = torch.randn(16, 8)

    def grad_norm():
        model.zero_grad()
        model(x).pow(2).sum().backward()
        return float(nn.utils.clip_grad_norm_(model.parameters(), 1e9))

    unmasked = grad_norm()
    assert (model[0].weight.grad[~model[0].weight_mask] != 0).any()  # the default: as autograd computes
    mask_gradients(model)
    masked = grad_norm()
    for i in (0, 2):
        assert (model[i].weight.grad[~model[i].weight_mask] == 0).all()
    kept_only = math.sqrt(
        sum(float(p.grad.pow(2).sum()) for p in model.parameters())  # grads already masked
    )
    assert masked == pytest.approx(kept_only, rel=1e-5)
    assert masked < unmasked
    mask_gradients(model, enabled=False)
    assert grad_norm() == pytest.approx(unmasked, rel=1e-6)


def test_inference_mode_is_refused_up_front_and_changes_nothing():
    torch.manual_seed(0)
    with torch.inference_mode(), pytest.raises(RuntimeError, match=r"inside torch\.inference_mode"):
        PrunableLinear(3, 2)
    model = make_prunable(_mlp())
    pruner = Pruner([MagnitudePruneGroup([model[0], model[2]], 0.5)], model=model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for call in (pruner.prune, pruner.rewind, pruner.set_rewind_point):
        with torch.inference_mode(), pytest.raises(RuntimeError, match=r"torch\.no_grad\(\) instead"):
            call()
    with torch.no_grad():
        pruner.prune()  # under no_grad it works, and the model loads its own state afterwards
    model.load_state_dict(before)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def _state_equal(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_a_pruned_gpt2_comes_back_pruned_and_loads_plain(tmp_path):
    from lotto_backends.torch import hf

    model = make_prunable(_gpt2())
    pruner = Pruner([MagnitudePruneGroup(_prunable_layers(model), 0.5)], model=model)
    pruner.prune()
    hf.save_pretrained(model, tmp_path)
    back = hf.from_pretrained(transformers.GPT2LMHeadModel, tmp_path)
    _state_equal(model, back)
    assert back.lm_head.weight is back.transformer.wte.weight
    plain = transformers.GPT2LMHeadModel.from_pretrained(tmp_path)  # no unexpected keys: plain weights
    conv = model.transformer.h[0].attn.c_attn
    assert torch.equal(plain.transformer.h[0].attn.c_attn.weight, conv.weight)
    assert (plain.transformer.h[0].attn.c_attn.weight[~conv.weight_mask] == 0).all()
    saved = torch.load(tmp_path / hf.LOTTO_STATE)  # torch.load's defaults (weights_only=True)
    assert "transformer.h.0.attn.c_attn.weight_mask" in saved["state"]


def test_a_pruned_vit_comes_back_pruned_although_transformers_renames_its_keys(tmp_path):
    from lotto_backends.torch import hf

    torch.manual_seed(0)
    config = transformers.ViTConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=8, patch_size=4
    )
    embeddings = transformers.models.vit.modeling_vit.ViTEmbeddings  # cls token, positions: left dense
    model = make_prunable(transformers.ViTModel(config), exclude=embeddings)
    Pruner([MagnitudePruneGroup(_prunable_layers(model), 0.5)], model=model).prune()
    hf.save_pretrained(model, tmp_path)
    _state_equal(model, hf.from_pretrained(transformers.ViTModel, tmp_path, exclude=embeddings))
    with pytest.raises(ValueError, match="does not match the model's prunable layers"):
        hf.from_pretrained(transformers.ViTModel, tmp_path, exclude=[embeddings, nn.LayerNorm])
    with pytest.raises(FileNotFoundError, match=r"lotto_state\.pt does not exist"):
        hf.from_pretrained(transformers.ViTModel, tmp_path / "elsewhere")


def test_a_layer_on_the_meta_device_is_refused_with_a_clear_error():
    layer = PrunableLinear(4, 3, device="meta")
    with pytest.raises(ValueError, match="is on the meta device"):
        Pruner([MagnitudePruneGroup([layer], 0.5)], model=layer).prune()


def test_t5s_four_tied_embeddings_are_one_weight_pruned_once():
    torch.manual_seed(0)
    config = transformers.T5Config(
        vocab_size=64, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2, tie_word_embeddings=True
    )
    model = transformers.T5ForConditionalGeneration(config)
    norm = transformers.models.t5.modeling_t5.T5LayerNorm
    make_prunable(model, exclude=norm)
    tied = [model.shared, model.encoder.embed_tokens, model.decoder.embed_tokens, model.lm_head]
    assert len({id(m.weight) for m in tied}) == 1
    masks = {id(m.parameter_handles()["weight"].get_mask()) for m in tied}
    assert len(masks) == 1
    layers = _prunable_layers(model)
    pruner = Pruner([MagnitudePruneGroup(layers, 0.2)], model=model)
    total = sum(
        {
            id(h.parameter): h.parameter.numel()
            for m in layers
            for h in m.parameter_handles().values()
            if h.get_mask() is not None
        }.values()
    )
    pruner.prune()
    report = pruner.report()
    assert report.total == total
    assert report.total - report.kept == prune_count(0.2, total)  # 20%, not the 28.5% of four masks


def test_the_optimizer_hook_follows_a_parameter_whose_storage_was_replaced():
    torch.manual_seed(0)
    layer = PrunableLinear(256, 256)  # large enough for the host kernels' fused pass
    Pruner([MagnitudePruneGroup([layer], 0.5)], model=layer).prune()
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    x = torch.randn(4, 256)

    def step():
        loss = layer(x).pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    old = layer.weight.data
    kept_old = old.clone()
    with torch.no_grad():
        layer.weight.data = torch.randn(256, 256) + 5.0  # new storage, all non-zero
    loss = (layer.weight * 1.0).sum()  # no forward of the layer: only the optimizer hook masks
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert (layer.weight[~layer.weight_mask] == 0).all()
    assert not torch.signbit(layer.weight[~layer.weight_mask]).any()  # exact +0.0
    assert torch.equal(old, kept_old)  # nothing written through a stale view

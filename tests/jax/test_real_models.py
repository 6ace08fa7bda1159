"""The JAX adapter on training code that no one here wrote: weights read outside the
layer's call, optimizer states kept across a prune, gradient noise; the number of
compilations of an IMP run; a whole-model rewind; layers built the way Flax builds big
models."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lotto_backends.jax import (
    KeptElsewhere,
    MagnitudePruneGroup,
    Optimizer,
    PrunableLinear,
    PrunableModule,
    Pruner,
    make_prunable,
    model_masks,
)

from .models import (
    MLP,
    TRANSFORMS,
    Compiles,
    Tied,
    WithRest,
    flat_state,
    imp_compilations,
    pruned_nonzero,
    run_tied,
    tied_loss,
)


@nnx.jit
def _step(model: Tied, optimizer: nnx.Optimizer, ids: jax.Array) -> jax.Array:
    loss, grads = nnx.value_and_grad(tied_loss)(model, ids)
    optimizer.update(model, grads)
    return loss


@pytest.mark.parametrize("transform", list(TRANSFORMS))
def test_the_lotto_optimizer_keeps_pruned_weights_zero_whatever_moves_them(transform):
    model, pruner = run_tied(_step, Optimizer, transform)
    assert pruned_nonzero(model) == 0
    assert pruner.report().revived == 0


def test_a_plain_optimizer_revives_pruned_weights_and_report_says_so():
    model, pruner = run_tied(_step, nnx.Optimizer, "adam")
    assert pruned_nonzero(model) > 0  # the failure the Lotto optimizer prevents
    with pytest.warns(UserWarning, match="pruned weights are not zero"):
        report = pruner.report()
    assert report.revived == pruned_nonzero(model)


def test_model_masks_follow_the_parameters_structure():
    model = make_prunable(Tied(nnx.Rngs(0)))
    masks = model_masks(model)
    params = nnx.as_pure(nnx.state(model, nnx.Param))
    assert jax.tree_util.tree_structure(masks, is_leaf=lambda x: x is None) == jax.tree_util.tree_structure(
        jax.tree.map(lambda _: 0, params)
    )
    assert masks["embed"]["embedding"] is model.embed.embedding_mask.get_value()
    assert masks["token"] is None
    assert masks["hidden"]["bias"] is None


@pytest.mark.parametrize("reuse", [True, False], ids=["kept-optimizer", "new-optimizer"])
@pytest.mark.parametrize("prune_first", [True, False], ids=["prune-first", "train-first"])
def test_an_imp_run_compiles_the_step_as_often_as_the_plain_model(reuse, prune_first):
    def counted_train_step(model, optimizer, x):
        grads = nnx.grad(lambda m: (m(x) ** 2).mean())(model)
        optimizer.update(model, grads)

    step = nnx.jit(counted_train_step)
    counts = [
        imp_compilations(step, "counted_train_step", prunable=p, reuse=reuse, prune_first=prune_first)
        for p in (True, False)
    ]
    assert counts[0] == counts[1]


def _train_rest(model: WithRest, steps: int = 3) -> None:
    optimizer = Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    x = jax.random.normal(jax.random.key(1), (16, 6))
    y = (x[:, 0] > 0).astype(jnp.int32)

    @nnx.jit
    def step(model, optimizer):
        loss = lambda m: optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()  # noqa: E731
        optimizer.update(model, nnx.grad(loss)(model))

    for _ in range(steps):
        step(model, optimizer)


def test_rewind_restores_every_parameter_and_batch_statistic():
    model = WithRest(nnx.Rngs(0))
    start = flat_state(model)
    pruner = Pruner([MagnitudePruneGroup([model.hidden], 0.5)], model=model)
    _train_rest(model)
    pruner.prune_and_rewind()
    after = flat_state(model)
    mask = np.asarray(model.hidden.kernel_mask[...])
    for key, value in after.items():
        if "hidden" in key and "'kernel'" in key:
            np.testing.assert_array_equal(value, np.where(mask, start[key], 0))
        elif "kernel_mask" not in key:
            np.testing.assert_array_equal(value, start[key], err_msg=key)


def test_rewind_of_the_groups_only_and_the_warning_without_the_model():
    model = WithRest(nnx.Rngs(0))
    pruner = Pruner([MagnitudePruneGroup([model.hidden], 0.5)], model=model, rewind="groups")
    _train_rest(model)
    trained = np.asarray(model.cls[...])
    pruner.prune_and_rewind()
    np.testing.assert_array_equal(model.cls[...], trained)
    bare = Pruner([MagnitudePruneGroup([model.hidden], 0.5)])
    with pytest.warns(UserWarning, match="restored only the grouped layers"):
        bare.rewind()
    with pytest.raises(ValueError, match="model does not contain"):
        Pruner([MagnitudePruneGroup([model.hidden], 0.5)], model=MLP(nnx.Rngs(1)))


def test_prunable_layers_build_as_flax_builds_big_models():
    abstract = nnx.eval_shape(lambda: PrunableLinear(4, 3, rngs=nnx.Rngs(0)))
    assert abstract.kernel_mask.get_value().shape == (4, 3)
    jitted = nnx.jit(lambda: PrunableLinear(4, 3, rngs=nnx.Rngs(0)))()
    assert jitted.kernel_mask[...].all()

    @nnx.vmap(in_axes=0, out_axes=0)
    def stack(rngs):
        return PrunableLinear(4, 4, rngs=rngs)

    @nnx.vmap(in_axes=0, out_axes=0)
    def plain_stack(rngs):
        return nnx.Linear(4, 4, rngs=rngs)

    @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
    def forward(x, layer):
        return nnx.relu(layer(x))

    layers = stack(nnx.Rngs(0).split(3))
    assert layers.kernel_mask[...].shape == (3, 4, 4)
    converted = make_prunable(plain_stack(nnx.Rngs(0).split(3)))
    assert isinstance(converted, PrunableModule)
    Pruner([MagnitudePruneGroup([converted], 0.5)], model=converted).prune()
    assert int(converted.kernel_mask[...].sum()) == 24
    x = jnp.ones((2, 4))
    assert forward(x, layers).shape == forward(x, converted).shape == (2, 4)


def test_default_masks_skip_biases_and_scales_of_any_shape():
    from lotto_backends.jax import pytree

    params = {
        "conv": {"weight": jnp.ones((8, 3, 3, 3)), "bias": jnp.ones((8, 1, 1))},  # Equinox Conv2d
        "attention": {"query": {"kernel": jnp.ones((16, 2, 8)), "bias": jnp.ones((2, 8))}},  # linen MHA
        "linear": {"w": jnp.ones((4, 4)), "b": jnp.ones((4,))},  # Haiku
        "norm": {"scale": jnp.ones((1, 4)), "offset": jnp.ones((1, 4))},
        "embed": {"embedding": jnp.ones((10, 4))},
    }
    masks = pytree.init_masks(params)
    assert masks["conv"]["bias"] is None
    assert masks["attention"]["query"]["bias"] is None
    assert masks["linear"]["b"] is None
    assert masks["norm"]["scale"] is None
    assert masks["norm"]["offset"] is None
    for leaf in (masks["conv"]["weight"], masks["attention"]["query"]["kernel"], masks["embed"]["embedding"]):
        assert leaf is not None


@pytest.mark.parametrize(
    "bad",
    [
        lambda: jnp.ones((3, 4), dtype=bool),  # transposed
        lambda: jnp.ones((3,), dtype=bool),  # broadcastable
        lambda: jnp.ones((4, 3), dtype=jnp.uint8),
        lambda: jnp.ones((4, 3), dtype=jnp.float32),
        lambda: np.ones((4, 3), dtype=bool),
    ],
    ids=["transposed", "broadcast", "uint8", "float32", "numpy"],
)
def test_set_mask_refuses_a_bad_mask_and_changes_nothing(bad):
    layer = PrunableLinear(4, 3, rngs=nnx.Rngs(0))
    before = flat_state(layer)
    with pytest.raises((TypeError, ValueError), match="mask"):
        layer.parameter_handles()["kernel"].set_mask(bad())
    after = flat_state(layer)
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)


def test_orbax_saves_the_model_and_pruner_and_resumes_bit_identically(tmp_path):
    ocp = pytest.importorskip("orbax.checkpoint")

    def build(seed: int) -> tuple[WithRest, Pruner]:
        model = WithRest(nnx.Rngs(seed))
        return model, Pruner([MagnitudePruneGroup([model.hidden], 0.3)], model=model)

    def imp_round(model: WithRest, pruner: Pruner) -> None:
        _train_rest(model, 2)
        pruner.prune_and_rewind()

    straight, straight_pruner = build(0)
    for _ in range(3):
        imp_round(straight, straight_pruner)

    model, pruner = build(0)
    imp_round(model, pruner)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(tmp_path / "model", nnx.state(model))
        checkpointer.save(tmp_path / "pruner", pruner.state_dict())
        checkpointer.wait_until_finished()
        # a new process: abstract model (nnx.eval_shape), restored onto its structure
        abstract = nnx.eval_shape(lambda: WithRest(nnx.Rngs(7)))
        graphdef, abstract_state = nnx.split(abstract)
        resumed = nnx.merge(graphdef, checkpointer.restore(tmp_path / "model", abstract_state))
        resumed_pruner = Pruner([MagnitudePruneGroup([resumed.hidden], 0.3)], model=resumed)
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, resumed_pruner.state_dict())
        resumed_pruner.load_state_dict(checkpointer.restore(tmp_path / "pruner", target))
    for _ in range(2):
        imp_round(resumed, resumed_pruner)
    assert resumed_pruner.rounds == straight_pruner.rounds == 3
    a, b = flat_state(resumed), flat_state(straight)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _another_device() -> jax.Device:
    """A device besides the default one: the host's CPU where an accelerator is the
    default (the reason to move rewind points), else the session's second host device."""
    devices = jax.devices()
    if devices[0].platform != "cpu":
        return jax.devices("cpu")[0]
    assert len(devices) >= 2, "the JAX session runs with two host devices"
    return devices[1]


def _rewind_devices(layer: nnx.Module, name: str = "kernel") -> set[jax.Device]:
    return layer.parameter_handles()[name].get_rewind_point().devices()


def test_rewind_points_can_live_on_another_device():
    devices = [jax.devices()[0], _another_device()]
    layer = PrunableLinear(6, 4, rngs=nnx.Rngs(0)).set_rewind_device(devices[1])
    start = np.asarray(layer.kernel[...])
    assert _rewind_devices(layer) == _rewind_devices(layer, "bias") == {devices[1]}
    assert isinstance(layer.kernel_rewind.get_value(), KeptElsewhere)
    pruner = Pruner([MagnitudePruneGroup([layer], 0.5)], model=layer)
    layer.kernel.set_value(layer.kernel[...] * 3)
    pruner.prune_and_rewind()
    assert layer.kernel[...].devices() == {devices[0]}  # the weight stays where it was
    np.testing.assert_array_equal(layer.kernel[...], np.where(np.asarray(layer.kernel_mask[...]), start, 0))
    pruner.set_rewind_point()
    assert _rewind_devices(layer) == {devices[1]}  # moved points stay on their device
    layer.set_rewind_device(None)
    assert layer.kernel_rewind.get_value().devices() == {devices[0]}


def _imp_with_rewind_points_on(device: jax.Device | None, committed: bool) -> tuple[nnx.Module, int]:
    """Two IMP rounds of a jitted step over a model whose rewind points live on
    ``device``; the model and the number of compilations of the step."""
    model = nnx.Sequential(PrunableLinear(6, 8, rngs=nnx.Rngs(0)), nnx.relu, PrunableLinear(8, 3, rngs=nnx.Rngs(1)))
    layers = list(model.layers[::2])
    if committed:
        for variable in jax.tree.leaves(nnx.state(model, nnx.Param), is_leaf=lambda v: isinstance(v, nnx.Variable)):
            variable.set_value(jax.device_put(variable.get_value(), jax.devices()[0]))
    for layer in layers:
        layer.set_rewind_device(device)
    x = jnp.ones((5, 6))

    def step_with_points_elsewhere(model, optimizer):
        loss, grads = nnx.value_and_grad(lambda m: (m(x) ** 2).mean())(model)
        optimizer.update(model, grads)
        return loss

    step = nnx.jit(step_with_points_elsewhere)
    pruner = Pruner([MagnitudePruneGroup(layers, 0.5)], model=model)
    with Compiles("step_with_points_elsewhere") as compiles:
        for _ in range(2):  # IMP rounds: train, prune, rewind
            optimizer = Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
            for _ in range(3):
                step(model, optimizer)
            for array in jax.tree.leaves(nnx.state((model, optimizer))):  # weights, masks, Adam: none moved
                assert array.devices() == {jax.devices()[0]}
            pruner.prune_and_rewind()
    return model, compiles.count


@pytest.mark.parametrize("committed", [False, True], ids=["flax-placed", "committed"])
def test_a_jitted_step_runs_where_the_weights_are_whatever_device_keeps_the_rewind_points(committed):
    # points committed to another device and passed to jit would pull the step there
    # (weights Flax left uncommitted) or fail with incompatible devices (committed ones)
    elsewhere = _another_device()
    model, compiles = _imp_with_rewind_points_on(elsewhere, committed)
    assert len(jax.tree.leaves(nnx.state(model))) == 6  # weights and masks: no rewind point
    assert compiles <= _imp_with_rewind_points_on(None, committed)[1]  # no compilation of their own
    for layer in model.layers[::2]:
        handle = layer.parameter_handles()["kernel"]
        assert handle.get_rewind_point().devices() == {elsewhere}
        want = np.where(np.asarray(layer.kernel_mask[...]), np.asarray(handle.get_rewind_point()), 0)
        np.testing.assert_array_equal(np.asarray(layer.kernel[...]), want)  # rewound from there


def test_sharded_layers_on_an_explicit_mesh_prune_like_unsharded_and_carry_partition_specs():
    assert len(jax.devices()) >= 2, "the JAX session runs with two host devices"
    mesh = jax.make_mesh((2,), ("model",))
    init = nnx.with_partitioning(nnx.initializers.lecun_normal(), (None, "model"))
    with jax.set_mesh(mesh):
        layer = PrunableLinear(nnx.Linear(187, 16, kernel_init=init, rngs=nnx.Rngs(0)))
    specs = nnx.get_partition_spec(nnx.state(layer))
    assert specs["kernel_mask"].get_value() == specs["kernel_rewind"].get_value() == jax.P(None, "model")
    plain = PrunableLinear(187, 16, rngs=nnx.Rngs(0))
    plain.kernel.set_value(jnp.asarray(np.asarray(layer.kernel[...])))
    for model in (layer, plain):
        pruner = Pruner([MagnitudePruneGroup([model], 0.4)], model=model)
        pruner.prune()
        pruner.prune()
    np.testing.assert_array_equal(np.asarray(layer.kernel_mask[...]), np.asarray(plain.kernel_mask[...]))
    assert layer.kernel_mask[...].sharding == layer.kernel[...].sharding
    assert layer.kernel[...].sharding.spec == jax.P(None, "model")

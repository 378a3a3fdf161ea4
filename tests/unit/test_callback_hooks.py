"""lit_nets.core.private_api.skip_inherited_hooks: Lightning's callback hook calls without the calls of Callback's own
empty methods, and otherwise the same calls, in the same order, with the same arguments."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.profilers import PassThroughProfiler, SimpleProfiler
from lightning.pytorch.trainer import call

from lit_nets.core import private_api

CALLS: list[tuple] = []


class Backward(Callback):
    def on_after_backward(self, trainer, pl_module):
        CALLS.append(("Backward", "on_after_backward", pl_module._current_fx_name))


class Epochs(Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        CALLS.append(("Epochs", "on_train_epoch_end"))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        CALLS.append(("Epochs", "on_before_optimizer_step", optimizer))


class Stopping(EarlyStopping):
    def on_train_epoch_end(self, trainer, pl_module):
        CALLS.append(("Stopping", "on_train_epoch_end"))


class Saving(ModelCheckpoint):
    def on_train_epoch_end(self, trainer, pl_module):
        CALLS.append(("Saving", "on_train_epoch_end"))


class Named(PassThroughProfiler):
    """Records nothing, as the CLI's default profiler; notes which callbacks' hooks were called."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def profile(self, action_name: str):
        self.names.append(action_name)
        return super().profile(action_name)


def trainer_with(profiler) -> SimpleNamespace:
    on_the_instance = Callback()  # a hook set on the object, not the class: it runs
    on_the_instance.on_after_backward = lambda trainer, pl_module: CALLS.append(("instance", "on_after_backward"))
    callbacks = [Backward(), Callback(), Stopping(monitor="val/loss"), Epochs(), on_the_instance, Saving()]
    module = SimpleNamespace(_current_fx_name="x")
    return SimpleNamespace(callbacks=callbacks, profiler=profiler, lightning_module=module)


HOOKS = [
    ("on_after_backward", (), None),
    ("on_before_optimizer_step", ("the optimiser",), None),
    ("on_train_epoch_end", (), False),
    ("on_train_epoch_end", (), True),
    ("on_train_epoch_end", (), None),
    ("on_before_zero_grad", ("the optimiser",), None),  # nobody's
]


@pytest.fixture
def lightnings(monkeypatch) -> object:
    monkeypatch.setattr(call, "_call_callback_hooks", call._call_callback_hooks)  # put back afterwards
    private_api.skip_inherited_hooks()
    private_api.skip_inherited_hooks()  # idempotent
    assert call._call_callback_hooks is private_api._call_callback_hooks
    return private_api._HOOKS["lightnings"]


@pytest.mark.parametrize(("hook", "args", "monitoring"), HOOKS)
def test_the_same_calls_as_lightnings_without_the_inherited_empty_ones(lightnings, hook, args, monitoring) -> None:
    made = {}
    for name, function in (("lightning", lightnings), ("ours", call._call_callback_hooks)):
        CALLS.clear()
        trainer = trainer_with(Named())
        function(trainer, hook, *args, monitoring_callbacks=monitoring)
        made[name] = (list(CALLS), trainer.profiler.names, trainer.lightning_module._current_fx_name)
    assert made["ours"][0] == made["lightning"][0]  # the same calls, order and arguments (the hook name set in them)
    assert made["ours"][2] == made["lightning"][2] == "x"  # the module's hook name put back
    assert len(made["ours"][1]) == len({c[0] for c in made["ours"][0]})  # only the callbacks that do something
    if monitoring is not True:  # the two monitoring callbacks both override on_train_epoch_end
        assert len(made["ours"][1]) < len(made["lightning"][1])


def test_every_call_is_timed_with_a_profiler_that_records(lightnings) -> None:
    CALLS.clear()
    trainer = trainer_with(SimpleProfiler())
    call._call_callback_hooks(trainer, "on_after_backward")
    assert [c[0] for c in CALLS] == ["Backward", "instance"]
    assert sum(map(len, trainer.profiler.recorded_durations.values())) == 6  # all six, as Lightning times them

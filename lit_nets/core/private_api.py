"""Every use of another library's private API in lit_nets, with why no public way does the job.

Each is a bet on internals that may change in a minor release; the version pins in pyproject.toml
(``lightning<2.7``, ``litserve<0.3``) keep them honest, and the tests named below fail when one breaks. The
small ones are functions here; the rest are overrides that must sit in their class, listed with where they are.

Lightning
---------
- :func:`logs_this_step`: ``trainer._logger_connector.should_update_logs``, whether this step is one the logger
  writes (``log_every_n_steps``). Lightning's own LearningRateMonitor asks the same; the public
  ``trainer.global_step`` counts optimiser steps, not batches, so it differs with gradient accumulation.
- :func:`stop_at_once`: ``trainer._signal_connector.received_sigterm``, the flag the training loop checks after
  every batch. ``trainer.should_stop`` waits for the epoch's end; a SIGTERM must stop at the next step
  (``callbacks.SaveOnInterrupt``; ``tests/service/test_reliability.py``).
- :func:`inner_sampler`: ``DistributedSamplerWrapper.dataset._sampler``, where Lightning keeps the sampler it
  wrapped under DDP; the resumable loader must tell it which epoch to serve (``data.base.ResumableLoader``).
- ``LightningModule._current_fx_name`` (:class:`lit_nets.core.models.fast_path.PlainHookName`): set as a plain
  attribute, ~15 times a step, for speed.
- ``cli.LitNetsCLI._prepare_subcommand_parser``: adds ``--test_after_fit`` to ``fit`` only. The public
  ``add_arguments_to_parser`` is called for every subcommand's parser without saying which.
- Lightning's ``LightningCLI._parse_ckpt_path`` (not overridden, but stepped around): it merges a checkpoint
  *file*'s hyper-parameters (data values included) into the config, leaves ``best`` / ``last`` alone, and made
  jsonargparse copy a 5,000-column CSV schema for minutes. ``cli.LitNetsCLI.parse_arguments`` (public) resolves
  every spelling of ``--ckpt_path`` and merges only the model's own arguments, then hands that hook no path;
  ``before_instantiate_classes`` (public) puts the path back. This relies on the hook running between the two,
  as it does in Lightning 2.6 (``LightningCLI.__init__``).
- ``cli.LitNetsCLI._instantiate_trainer``: the callbacks that depend on the configured ones (``last.ckpt`` at every
  epoch's end replaces the main checkpoint's ``save_last``; our progress bar unless the user chose another) and
  the quiet profiler default. ``trainer_defaults`` callbacks are always added, whatever the user configured,
  so they cannot express "unless".

- :func:`model_instantiator`: a subclass of ``lightning.pytorch.cli._InstantiatorFn``, the function Lightning's CLI
  builds the model with (it records the model's config as its hyper-parameters). Lightning writes every applied
  instantiation link into those hyper-parameters, the links into a network given to the classifier
  (``model.init_args.net.init_args.num_classes``) too, and fails when no network was given (``net: null``). Ours
  leaves those out then; no public hook sees the links.

LitServe and uvicorn (``lit_nets.deploy.serve``; ``tests/service/test_serve.py``)
------------------------------------------------------------------
- ``Server._start_server`` and ``Server._perform_graceful_shutdown``: LitServe's shutdown closes its queues
  before the requests in flight are answered, and has no hook to drain first.
- ``LitServer._shutdown_event``, ``monitor_internal`` and the thread name ``litserve-monitoring``: the stop order
  above waits for LitServe's worker monitor, which has no public handle.
- ``IdleLoop``: ``lit_api.batch_timeout`` set to 0 for one call of ``BatchedLoop.get_batch_requests``, so that a
  request that finds the service idle runs at once (LitServe's loop polls its queue every millisecond).
- ``header_timeout_protocol``: a subclass of uvicorn's ``H11Protocol`` (uvicorn has no header timeout).
- :func:`fast_hparams_yaml`: replaces the name ``save_hparams_to_yaml`` in Lightning's TensorBoard and CSV logger
  modules. Lightning writes ``hparams.yaml`` with PyYAML's pure-Python dumper, twice (each value once to test it,
  then the file): 2.8 s for a 5,000-column schema on our 2 cores. Ours writes plain data with libyaml's C dumper in
  0.4 s (tuples as lists) and hands anything else (objects, OmegaConf) to Lightning's function. No public hook
  writes that file (``tests/unit/test_hparams_yaml.py``).
- :func:`skip_inherited_hooks`: replaces ``lightning.pytorch.trainer.call._call_callback_hooks``, through which
  Lightning calls each hook on every callback, including those that only inherit ``Callback``'s empty method: three
  times an optimiser step (``on_before_backward``, ``on_after_backward``, ``on_before_optimizer_step``) over the
  CLI's 13 callbacks, none of which overrides them, about 1 µs a callback a call, 5% of an epoch of
  ``configs/diamonds.yaml``. Ours passes over inherited empty methods and otherwise does what Lightning's does
  (Lightning's own review proposed it, PR #10575; torchtnt does it, PR #455); with a profiler that records (simple,
  advanced, pytorch) Lightning's runs, so every call is timed as before (``tests/unit/test_callback_hooks.py``).

Optuna (``lit_nets.train.tune_slots``; ``tests/service/test_shared_tune.py``, ``tests/integration/test_tune_slots.py``)
------------------------------------------------------------------------------
- :func:`take_queued_trial`: ``Study._pop_waiting_trial_id`` and ``Trial(study, trial_id)``. ``Study.ask`` (and
  ``optimize``) take a queued trial when there is one and otherwise *create* one: two workers that both saw the
  last queued trial make a study of N + 1. A worker here only takes queued trials (the atomic WAITING -> RUNNING
  change Optuna's own queue uses), which keeps a shared study at exactly ``--trials``. The sampler is set per
  trial before the Trial is made (it is asked in the constructor), and the study's trial cache is dropped as
  ``ask`` drops it.
- :func:`stale_trial_ids`: ``RDBStorage._get_stale_trial_ids``, the running trials whose heartbeat is older than
  the grace period. Optuna's public ``fail_stale_trials`` fails all of them; ours first passes over a trial whose
  worker is a live process of this machine (a late heartbeat on a loaded machine is not a death:
  ``lit_nets.train.tune_slots.fail_dead_trials``).

MLflow (``lit_nets.train.callbacks.tracking``; ``tests/service/test_mlflow.py``)
------------------------------------------------------------------------------
- :func:`mlflow_name_error`: ``mlflow.utils.validation._validate_experiment_name``, ``_validate_tag_name`` and
  ``_validate_param_name``, MLflow's own rules for names. Its server creates a run whose tag keys break them and
  refuses them later (``set_tag``, parameters), so a run is checked before it is made: one line at start, and
  parameters with names MLflow would refuse are left out (the whole config is the config.yaml artifact).

pandas
------
- ``pandas._libs.parsers.STR_NA_VALUES`` (``lit_nets.deploy.serve``): the strings ``read_csv`` reads as missing, so
  that a JSON record sent to the service treats ``"NA"`` as training did; pandas exports no such list.
"""

from __future__ import annotations

from typing import Any


def logs_this_step(trainer: Any) -> bool:
    """Whether the logger writes this training step (``log_every_n_steps``), as Lightning's monitors decide."""
    return bool(trainer._logger_connector.should_update_logs)


def stop_at_once(trainer: Any) -> None:
    """Stop ``fit`` after the current batch, as Lightning does on SIGTERM (without waiting for the epoch's end)."""
    trainer._signal_connector.received_sigterm = True


def inner_sampler(sampler: Any) -> Any:
    """The sampler Lightning's ``DistributedSamplerWrapper`` wraps (under DDP), or ``sampler`` itself."""
    inner = getattr(getattr(sampler, "dataset", None), "_sampler", None)
    return sampler if inner is None else inner


def fast_hparams_yaml() -> None:
    """Lightning's loggers write ``hparams.yaml`` through :func:`_save_hparams` (see the module's notes); idempotent."""
    import lightning.pytorch.loggers.csv_logs as csv_logs
    import lightning.pytorch.loggers.tensorboard as tensorboard

    for module in (tensorboard, csv_logs):
        if getattr(module.save_hparams_to_yaml, "__name__", "") != "_save_hparams":
            module.save_hparams_to_yaml = _save_hparams


def skip_inherited_hooks() -> None:
    """Lightning's ``_call_callback_hooks``, passing over callbacks whose hook is ``Callback``'s own empty method (see
    the module's notes); idempotent."""
    from lightning.pytorch.callbacks import Callback, Checkpoint, EarlyStopping
    from lightning.pytorch.profilers import PassThroughProfiler
    from lightning.pytorch.trainer import call

    if not getattr(call._call_callback_hooks, "skips_inherited", False):
        _HOOKS.update(
            lightnings=call._call_callback_hooks,
            base=Callback,
            monitoring=(EarlyStopping, Checkpoint),
            silent=PassThroughProfiler,
        )
        call._call_callback_hooks = _call_callback_hooks


_HOOKS: dict[str, Any] = {}  # Lightning's function and classes, as skip_inherited_hooks found them
_INHERITED: dict[tuple[type, str], bool] = {}  # (callback class, hook): the class's hook is Callback's own


def _inherited(callback: Any, hook: str) -> bool:
    key = (type(callback), hook)
    found = _INHERITED.get(key)
    if found is None:
        found = _INHERITED[key] = getattr(type(callback), hook, None) is getattr(_HOOKS["base"], hook, object())
    return found and hook not in getattr(callback, "__dict__", ())  # a hook set on the instance runs


def _call_callback_hooks(
    trainer: Any, hook_name: str, *args: Any, monitoring_callbacks: bool | None = None, **kwargs: Any
) -> None:
    """Lightning 2.6's ``_call_callback_hooks`` (``lightning/pytorch/trainer/call.py``), line for line, but for the
    callbacks it passes over: an inherited empty hook, called, does nothing."""
    if not isinstance(trainer.profiler, _HOOKS["silent"]):  # a profiler that records: every call, timed
        _HOOKS["lightnings"](trainer, hook_name, *args, monitoring_callbacks=monitoring_callbacks, **kwargs)
        return
    pl_module = trainer.lightning_module
    if pl_module:
        prev_fx_name = pl_module._current_fx_name
        pl_module._current_fx_name = hook_name
    callbacks = trainer.callbacks
    if monitoring_callbacks is True:
        callbacks = [cb for cb in callbacks if isinstance(cb, _HOOKS["monitoring"])]
    elif monitoring_callbacks is False:
        callbacks = [cb for cb in callbacks if not isinstance(cb, _HOOKS["monitoring"])]
    for callback in callbacks:
        if _inherited(callback, hook_name):
            continue
        fn = getattr(callback, hook_name)
        if callable(fn):
            with trainer.profiler.profile(f"[Callback]{callback.state_key}.{hook_name}"):
                fn(trainer, trainer.lightning_module, *args, **kwargs)
    if pl_module:
        pl_module._current_fx_name = prev_fx_name  # restore current_fx when nested context


_call_callback_hooks.skips_inherited = True  # type: ignore[attr-defined]


def _save_hparams(config_yaml: Any, hparams: Any, use_omegaconf: bool = True) -> None:
    """``hparams`` as Lightning's ``save_hparams_to_yaml`` writes them, with libyaml's C dumper when every value is
    plain data (numbers, text, lists, dicts); anything else goes to Lightning's function."""
    import os

    import yaml
    from lightning.fabric.utilities.cloud_io import get_filesystem
    from lightning.pytorch.core.saving import save_hparams_to_yaml

    dumper = getattr(yaml, "CSafeDumper", None)
    fs = get_filesystem(config_yaml)
    if dumper is None or not isinstance(hparams, dict) or not fs.isdir(os.path.dirname(config_yaml)):
        save_hparams_to_yaml(config_yaml, hparams, use_omegaconf)
        return
    try:
        text = yaml.dump(_plain(hparams), Dumper=dumper)
    except yaml.YAMLError:  # an object the safe dumper cannot write: Lightning's way (it skips those with a warning)
        save_hparams_to_yaml(config_yaml, hparams, use_omegaconf)
        return
    with fs.open(config_yaml, "w", newline="") as fp:
        fp.write(text)


def _plain(value: Any) -> Any:
    """Dict subclasses (Lightning's AttributeDict) as dicts, all the way down."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def take_queued_trial(study: Any, sampler_for: Any) -> Any:
    """A queued (WAITING) trial of ``study``, set RUNNING by this process, as an ``optuna.Trial`` whose sampler is
    ``sampler_for(trial_number)``; None when nothing is queued. Never creates a trial (``Study.ask`` would)."""
    import optuna

    trial_id = study._pop_waiting_trial_id()
    if trial_id is None:
        return None
    study._thread_local.cached_all_trials = None
    study.sampler = sampler_for(study._storage.get_trial(trial_id).number)
    return optuna.Trial(study, trial_id)


def stale_trial_ids(rdb: Any, study_id: int) -> list[int]:
    """The ids of the running trials of study ``study_id`` whose heartbeat is older than the storage's grace period."""
    return rdb._get_stale_trial_ids(study_id)


def mlflow_name_error(kind: str, name: str) -> str | None:
    """MLflow's reason for refusing ``name`` as an experiment name, a tag key or a parameter name (``kind``:
    ``experiment``, ``tag``, ``param``), or None when it takes it."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils import validation

    check = {
        "experiment": validation._validate_experiment_name,
        "tag": validation._validate_tag_name,
        "param": validation._validate_param_name,
    }[kind]
    try:
        check(name)
    except MlflowException as e:
        return e.message
    return None


def model_instantiator(cli: Any, key: str, skip_under: str) -> Any:
    """Lightning CLI's instantiator of ``key`` (the model), leaving out the links under ``skip_under`` (a
    sub-config of the model's init_args) when that sub-config is None in the arguments."""
    from lightning.pytorch.cli import _InstantiatorFn

    class Instantiator(_InstantiatorFn):
        def __call__(self, class_type: Any, *args: Any, applied_instantiation_links: dict, **kwargs: Any) -> Any:
            if kwargs.get(skip_under) is None:
                prefix = f"{key}.init_args.{skip_under}."
                applied_instantiation_links = {
                    k: v for k, v in applied_instantiation_links.items() if not k.startswith(prefix)
                }
            return super().__call__(
                class_type, *args, applied_instantiation_links=applied_instantiation_links, **kwargs
            )

    return Instantiator(cli=cli, key=key)

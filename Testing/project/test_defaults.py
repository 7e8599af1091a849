"""One set of defaults: every user-facing signature's default of a setting is ``drdm.settings.DEFAULTS``'s; the
functions below the front ends take the settings object (or no default at all)."""

from __future__ import annotations

import inspect

import pytest
from drdm.settings import DEFAULTS, SETTING_NAMES

# drdm.deform_image(count=None) returns one result as it is, a number N a list of N: a return type, not a count
NOT_A_SETTING_DEFAULT = {("drdm.deform_image", "count")}
ALIASES = {"keep_labels": "keep", "only_labels": "only"}  # TorchIO's Transform owns ``keep``: the transforms say so


def settings_defaults(function) -> dict[str, object]:
    """The defaults ``function`` gives to parameters that are settings (by name)."""
    found = {}
    for name, parameter in inspect.signature(function).parameters.items():
        setting = ALIASES.get(name, name)
        if setting in SETTING_NAMES and parameter.default is not inspect.Parameter.empty:
            found[setting] = parameter.default
    return found


def front_ends() -> dict[str, object]:
    import drdm
    from DRDMSlicerLib.logic import DeformationLogic

    functions = {f"drdm.{name}": getattr(drdm, name) for name in ("deform_image", "deform_array", "synthesize", "augment")}
    functions.update({"DeformationLogic.generate": DeformationLogic.generate,
                      "DeformationLogic.prepare": DeformationLogic.prepare})
    for module, names in (("drdm.transforms.monai_adapter", ("DRDMDeformd", "RandDRDMDeformd")),
                          ("drdm.transforms.torchio_adapter", ("DRDMDeformation", "RandomDRDMDeformation"))):
        loaded = pytest.importorskip(module)
        functions.update({name: getattr(loaded, name).__init__ for name in names})
    return functions


def test_front_ends_default_to_the_one_set_of_defaults():
    wrong = {}
    for where, function in front_ends().items():
        for setting, default in settings_defaults(function).items():
            expected = getattr(DEFAULTS, setting)
            if (where, setting) in NOT_A_SETTING_DEFAULT:
                continue
            if default != expected and not (setting in ("keep", "only") and tuple(default) == expected):
                wrong[f"{where}({setting}=)"] = (default, expected)
    assert wrong == {}


def test_the_command_line_defaults_are_the_settings_defaults():
    from drdm.cli import build_parser

    parser = build_parser()
    for command in (["generate", "x.nii.gz"], ["synthesize", "x.nii.gz"], ["augment", "x.nii.gz"]):
        args = vars(parser.parse_args(command + ["--out", "o"]))
        for setting in SETTING_NAMES:
            if setting in args and setting not in ("keep", "only"):
                assert args[setting] == getattr(DEFAULTS, setting), (command[0], setting)


def test_below_the_front_ends_the_settings_travel_as_one_object():
    """The physical layer, synthesis, augmentation and the transforms' core take ``settings`` (required): no
    parameter of theirs named after a setting has a default of its own; the sampler decides no mode or speed."""
    from drdm.physical import arrays, augment_data_set, deform
    from drdm.registration.synthesis import synthesize_pair
    from drdm.sampler import generate
    from drdm.transforms import core

    below = [deform.deform_image, deform.deform_images, deform.compute_field, deform.compute_fields,
             arrays.deform_samples, arrays.deform_array, augment_data_set.augment_data_set, synthesize_pair,
             core.deformation_field, core.deform_channels_first]
    for function in below:
        parameters = inspect.signature(function).parameters
        assert parameters["settings"].default is inspect.Parameter.empty, function.__qualname__
        assert settings_defaults(function) == {}, function.__qualname__
    sampler = inspect.signature(generate).parameters
    assert sampler["mode"].default is inspect.Parameter.empty and sampler["speed"].default is inspect.Parameter.empty


def test_one_vocabulary_message_and_one_level_rule():
    from drdm.errors import DRDMError
    from drdm.settings import DeformationSettings, check_level, look_up_option

    for field, value in (("mode", "folding"), ("speed", "fastest"), ("slices", "smooth"), ("device", "tpu"),
                         ("interpolation", "cubic"), ("label_method", "vote")):
        with pytest.raises(DRDMError) as raised:
            DeformationSettings(**{field: value})
        assert str(raised.value).startswith(f"unknown {field.replace('_', ' ')} {value!r}; choose one of ")
    assert look_up_option("fast", ("fast", "faster"), "speed") == "fast"
    assert check_level(80, 80) == 80
    for level in (-1, 81):
        with pytest.raises(DRDMError, match=f"level {level} is out of range: choose 0 to 80"):
            check_level(level, 80)


def test_a_seed_left_unset_is_drawn_once_and_recorded():
    from drdm.settings import DeformationSettings

    class Model:
        num_steps = 80

        @staticmethod
        def forward_process():
            return type("Process", (), {"first_level": 48})()

    concrete = DeformationSettings(count=3).for_model(Model())
    assert concrete.level == 48 and 0 <= concrete.seed < 2**31
    assert concrete.seeds() == [concrete.seed, concrete.seed + 1, concrete.seed + 2]
    assert concrete.for_model(Model()) == concrete  # a concrete request stays as it is
    assert DeformationSettings(seed=7, level=12).for_model(Model()).seeds() == [7]


def test_a_seed_must_fit_every_sample_s_generator():
    from drdm.errors import DRDMError
    from drdm.settings import TORCH_SEEDS, DeformationSettings

    assert DeformationSettings(seed=TORCH_SEEDS[1], count=1).seed == TORCH_SEEDS[1]
    assert DeformationSettings(seed=-5).seed == -5  # torch takes negative seeds: the command line always did
    import numpy as np

    assert type(DeformationSettings(seed=np.int64(9)).seed) is int
    for seed, count in ((TORCH_SEEDS[1], 2), (TORCH_SEEDS[0] - 1, 1), (1.5, 1), (True, 1), ("3", 1)):
        with pytest.raises(DRDMError, match="the seed must be a whole number"):
            DeformationSettings(seed=seed, count=count)

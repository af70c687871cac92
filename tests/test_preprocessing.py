"""PreprocessingParams: one declaration of the slice/volume settings, read by all four preprocessing paths."""

from __future__ import annotations

import dataclasses

import monai.transforms as mt
import pytest
from monai.bundle import ConfigParser

from hcp_cam.errors import ConfigError
from hcp_cam.training.data import build_transforms
from hcp_cam.training.device import RandSliceAugment
from hcp_cam.transforms import BatchedSliceEval, PreprocessingParams, SliceEvalCompose
from hcp_cam.transforms.preprocessing import FIELDS, as_params

# every field away from its default, so a path that ignores the params (or restates a default) shows
CHANGED = {
    "image_size": 40,
    "image_mode": "nearest",
    "crop_margin": 0.25,
    "crop_scale": [1.0, 1.0],  # only (1, 1) is common to every slice path; the device's own scales below
    "flip_prob": 0.2,
    "flip_axis": 1,
    "noise_std": 0.7,
    "noise_prob": 0.4,
    "noise_sample_std": True,
    "erase_prob": 0.3,
    "erase_size": [0.2, 0.4],
}


def _parsed(settings: dict) -> ConfigParser:
    """The layout a bundle config uses: the settings declared once, one ``_target_`` per path."""
    parser = ConfigParser(
        {
            "preprocessing": {"_target_": "hcp_cam.transforms.PreprocessingParams", **settings},
            "slices": {"_target_": "hcp_cam.training.data.build_transforms", "params": "@preprocessing"},
            "volumes": {
                "_target_": "hcp_cam.training.data.build_transforms",
                "spatial_dims": 3,
                "params": "@preprocessing",
            },
            "augmentation": {
                "_target_": "hcp_cam.training.device.RandSliceAugment",
                "params": "@preprocessing",
            },
        }
    )
    parser.parse()
    return parser


def _chains(p: PreprocessingParams, spatial_dims: int):
    return build_transforms(spatial_dims=spatial_dims, params=p)


def _one(chain, kind, k: int = 0):
    found = [t for t in chain.transforms if type(t) is kind]
    return found[k]


def _chain_settings(train, spatial_dims: int) -> dict:
    """What a MONAI train chain was built with, read off its transforms, in PreprocessingParams' terms."""
    resize = _one(train, mt.Resized)
    size = resize.resizer.spatial_size
    noise = _one(train, mt.RandGaussianNoised)
    flip = _one(train, mt.RandFlipd)
    out = {
        "image_size": size,
        "image_mode": str(resize.mode[0]),
        "flip_prob": flip.prob,
        "flip_axis": flip.flipper.spatial_axis,
        "noise_std": noise.rand_gaussian_noise.std,
        "noise_prob": noise.prob,
        "noise_sample_std": noise.rand_gaussian_noise.sample_std,
    }
    if spatial_dims == 2:
        erase = _one(train, mt.RandCoarseDropoutd)
        out.update(
            padded=_one(train, mt.SpatialPadd, 1).padder.spatial_size,
            crop=_one(train, mt.RandSpatialCropd).cropper.roi_size,
            erase_prob=erase.prob,
            erase_px=(erase.dropper.spatial_size, erase.dropper.max_spatial_size),
        )
    return out


def test_every_field_is_documented_with_its_default():
    doc = PreprocessingParams.__doc__
    defaults = PreprocessingParams()
    for f in dataclasses.fields(PreprocessingParams):
        assert f"{f.name}:" in doc, f"{f.name} is not documented"
        assert getattr(defaults, f.name) == f.default
    assert FIELDS == tuple(f.name for f in dataclasses.fields(PreprocessingParams))


def test_a_config_declares_it_once_and_every_path_reads_it():
    parser = _parsed(CHANGED)
    p = parser.get_parsed_content("preprocessing")
    assert p.crop_scale == (1.0, 1.0) and p.erase_size == (0.2, 0.4)  # JSON lists become tuples

    train, evaluate = parser.get_parsed_content("slices")
    assert isinstance(evaluate, SliceEvalCompose) and evaluate.batched.params is p
    got = _chain_settings(train, 2)
    assert got == {
        **{k: CHANGED[k] for k in ("image_size", "image_mode", "flip_prob", "flip_axis")},
        **{k: CHANGED[k] for k in ("noise_std", "noise_prob", "noise_sample_std", "erase_prob")},
        "padded": 50,  # round(40 * 1.25)
        "crop": 40,
        "erase_px": (8, 16),  # round(0.2 * 40), round(0.4 * 40)
    }
    assert _one(evaluate, mt.Resized).resizer.spatial_size == 40

    vol_train, vol_eval = parser.get_parsed_content("volumes")
    vol = _chain_settings(vol_train, 3)
    assert vol == {k: got[k] for k in vol}  # nearest stays nearest in 3D
    assert not [t for t in vol_train.transforms if type(t) in (mt.RandSpatialCropd, mt.RandCoarseDropoutd)]
    assert _one(vol_eval, mt.Resized).resizer.spatial_size == 40

    augment = parser.get_parsed_content("augmentation")
    assert augment.params is p


def test_one_edit_changes_every_path():
    base = _parsed({}).get_parsed_content("preprocessing")
    edited = _parsed({"noise_std": 0.05}).get_parsed_content("preprocessing")
    assert base.noise_std == 0.3 and edited == dataclasses.replace(base, noise_std=0.05)
    for p, std in ((base, 0.3), (edited, 0.05)):
        train, _ = _chains(p, 2)
        vol_train, _ = _chains(p, 3)
        assert _one(train, mt.RandGaussianNoised).rand_gaussian_noise.std == std
        assert _one(vol_train, mt.RandGaussianNoised).rand_gaussian_noise.std == std
        aug = RandSliceAugment(p).set_random_state(0)
        draw = aug.randomize((256, 1, 8, 8), "cpu")
        on = draw.noise.flatten(1).std(1) > 0
        assert float(draw.noise[on].std()) == pytest.approx(std, rel=0.05)


def test_volume_modes_and_the_slice_only_settings():
    _, vol_eval = _chains(PreprocessingParams(image_size=12), 3)
    assert str(_one(vol_eval, mt.Resized).mode[0]) == "trilinear"
    assert [str(m) for m in _one(vol_eval, mt.Resized).mode] == ["trilinear", "nearest"]
    with pytest.raises(ConfigError, match="bicubic"):
        _chains(PreprocessingParams(image_mode="bicubic"), 3)
    with pytest.raises(ConfigError, match="flip_axis"):
        _chains(PreprocessingParams(flip_axis=2), 2)
    with pytest.raises(ConfigError, match="flip_axis"):
        RandSliceAugment(flip_axis=2)
    train, _ = _chains(PreprocessingParams(flip_axis=2), 3)
    assert _one(train, mt.RandFlipd).flipper.spatial_axis == 2
    # scaled crops: the device augmentation's alone, refused by the MONAI chain rather than ignored
    scaled = PreprocessingParams(crop_scale=(0.8, 1.1))
    assert RandSliceAugment(scaled).params.crop_scale == (0.8, 1.1)
    with pytest.raises(ConfigError, match="crop_scale"):
        _chains(scaled, 2)


def test_builders_take_an_int_size_or_changes_and_refuse_unknown_names():
    assert as_params(32) == PreprocessingParams(image_size=32)
    assert as_params(None, noise_std=0.1) == PreprocessingParams(noise_std=0.1)
    assert BatchedSliceEval(16).image_size == 16 and BatchedSliceEval(16).image_mode == "bilinear"
    assert RandSliceAugment(noise_prob=1.0).params == PreprocessingParams(noise_prob=1.0)
    with pytest.raises(ConfigError, match=r"unknown preprocessing setting\(s\) \['noise_sd'\]"):
        RandSliceAugment(noise_sd=0.1)
    with pytest.raises(ConfigError, match="expected PreprocessingParams"):
        as_params("96")
    with pytest.raises(ConfigError, match="expected PreprocessingParams"):
        as_params(True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        PreprocessingParams().noise_std = 0.0  # declared once: nobody changes it under a path's feet


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"image_size": 0}, "image_size"),
        ({"image_mode": "lanczos"}, "image_mode"),
        ({"flip_prob": 1.5}, "flip_prob"),
        ({"noise_prob": -0.1}, "noise_prob"),
        ({"erase_prob": 2}, "erase_prob"),
        ({"noise_std": -1}, "noise_std"),
        ({"crop_margin": -0.1}, "crop_margin"),
        ({"flip_axis": 3}, "flip_axis"),
        ({"crop_scale": (0.5, 1.5)}, "crop_scale"),
        ({"crop_scale": 0.9}, "crop_scale must be two numbers"),
        ({"erase_size": (0.4, 0.2)}, "erase_size"),
        ({"erase_size": (0.0, 0.2)}, "erase_size"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(changes, match):
    with pytest.raises(ConfigError, match=match):
        PreprocessingParams(**changes)


@pytest.mark.parametrize("text, expected", [("false", False), ("True", True), ("0", False)])
def test_a_command_line_boolean_is_read_as_one(text, expected):
    # `--preprocessing#noise_sample_std false` reaches the dataclass as the string "false"
    assert PreprocessingParams(noise_sample_std=text).noise_sample_std is expected


def test_a_non_boolean_is_refused():
    with pytest.raises(ConfigError, match="noise_sample_std must be true or false, got 'maybe'"):
        PreprocessingParams(noise_sample_std="maybe")

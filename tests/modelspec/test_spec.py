import pytest
from pydantic import ValidationError

from modelspec import ModelSpec, Preprocessing, check_model_name
from tests.conftest import tiny_spec


def test_preprocessing_rejects_crop_larger_than_resize() -> None:
    with pytest.raises(ValidationError, match="crop_size"):
        Preprocessing(resize_size=200, crop_size=224)


def test_preprocessing_for_crop_uses_imagenet_ratio() -> None:
    assert Preprocessing.for_crop(224).resize_size == 256


def test_labels_must_match_classes() -> None:
    data = tiny_spec().model_dump()
    data["labels"] = ["a", "b"]
    with pytest.raises(ValidationError, match="2 labels given for 3 classes"):
        ModelSpec.model_validate(data)


def test_duplicate_labels_rejected() -> None:
    data = tiny_spec().model_dump()
    data["labels"] = ["a", "a", "b"]
    with pytest.raises(ValidationError, match="unique"):
        ModelSpec.model_validate(data)


@pytest.mark.parametrize("name", ["../etc", "Upper", "", "a/b", ".hidden", "x" * 65])
def test_unsafe_model_names_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="invalid model name"):
        check_model_name(name)


def test_newer_format_is_refused_with_upgrade_hint() -> None:
    data = tiny_spec().model_dump()
    data["format_version"] = 99
    with pytest.raises(ValidationError, match="upgrade imgclf"):
        ModelSpec.model_validate(data)


def test_spec_round_trips_through_json() -> None:
    spec = tiny_spec()
    assert ModelSpec.model_validate_json(spec.model_dump_json()) == spec

from pathlib import Path

import pytest

from app.config import Settings

SETTINGS_DOC = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_every_setting_is_documented() -> None:
    text = SETTINGS_DOC.read_text()
    missing = [name for name in Settings.model_fields if f"`IMGCLF_{name.upper()}`" not in text]
    assert not missing, f"document these settings in docs/settings.md's table: {missing}"


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGCLF_MODELS_DIR", "/srv/models")
    monkeypatch.setenv("IMGCLF_MAX_BATCH_SIZE", "4")
    monkeypatch.setenv("IMGCLF_API_KEY", "s3cret-key")
    monkeypatch.setenv("IMGCLF_BATCHING", "false")
    settings = Settings()
    assert settings.models_dir == Path("/srv/models")
    assert settings.max_batch_size == 4 and settings.batching is False
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "s3cret-key"
    assert "s3cret-key" not in repr(settings)  # the key never shows up in logs


def test_threads_are_split_between_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("app.config.available_cores", lambda: 8)
    settings = Settings(workers=2)
    assert settings.resolved_intra_op_threads() == 4 and settings.resolved_decode_threads() == 4
    assert Settings(intra_op_threads=3).resolved_intra_op_threads() == 3

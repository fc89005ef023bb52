import pytest

from common.keys import Keys
from common.settings import Settings


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIPLANE_REDIS_URL", "redis://example:1234/2")
    monkeypatch.setenv("BIPLANE_KEY_PREFIX", "px")
    monkeypatch.setenv("BIPLANE_S3_SECRET_KEY", "s3cr3t")
    monkeypatch.setenv("BIPLANE_API_KEYS", " a, b ,,c")
    monkeypatch.setenv("BIPLANE_SD_MODEL", "/models/sd15")
    monkeypatch.setenv("BIPLANE_MAX_NODE_ATTEMPTS", "5")
    s = Settings()
    assert s.redis_url == "redis://example:1234/2"
    assert s.s3_secret_key.get_secret_value() == "s3cr3t"
    assert "s3cr3t" not in repr(s)
    assert s.api_key_set() == {"a", "b", "c"}
    assert s.sd_model == "/models/sd15"
    assert s.max_node_attempts == 5
    assert Keys(s.key_prefix).stream("data") == "px:jobs:data"


def test_settings_reject_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIPLANE_MAX_NODE_ATTEMPTS", "0")
    with pytest.raises(ValueError, match="max_node_attempts"):
        Settings()

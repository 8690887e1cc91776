"""INSTRUMENTS selects across exchanges: ``exchange:INSTRUMENT`` entries, a bare entry being OKX's."""

from __future__ import annotations

import pytest

from configs.selection import Followed
from configs.settings import ConfigError, load_settings


def test_a_bare_entry_keeps_meaning_okx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSTRUMENTS", "BTC-USDT,ETH-USDT")
    settings = load_settings()
    assert settings.selection == (Followed("okx", "BTC-USDT"), Followed("okx", "ETH-USDT"))
    assert settings.followed() == {"okx": ("BTC-USDT", "ETH-USDT")}


def test_entries_name_their_exchange(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSTRUMENTS", "okx:BTC-USDT,binance:BTC-USDT,binance:XRP-ETH,ETH-USDT")
    settings = load_settings()
    assert settings.followed() == {"okx": ("BTC-USDT", "ETH-USDT"), "binance": ("BTC-USDT", "XRP-ETH")}
    assert settings.binance_ws_url == "wss://stream.binance.com:9443"
    assert settings.binance_rest_url == "https://api.binance.com"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("kraken:BTC-USD", "unknown exchange 'kraken'"),
        ("binance:btc-usdt", "is not an instrument id"),
        ("BTC-USDT,okx:BTC-USDT", "okx:BTC-USDT is listed more than once"),
    ],
)
def test_a_bad_selection_names_the_entry(monkeypatch: pytest.MonkeyPatch, value: str, reason: str) -> None:
    monkeypatch.setenv("INSTRUMENTS", value)
    with pytest.raises(ConfigError, match="instruments") as raised:
        load_settings()
    assert reason in str(raised.value)


def test_binance_urls_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BINANCE_WS_URL", "http://x")
    with pytest.raises(ConfigError, match="binance_ws_url: must start with ws:// or wss://"):
        load_settings()
    monkeypatch.setenv("BINANCE_WS_URL", "ws://127.0.0.1:1")
    monkeypatch.setenv("BINANCE_REST_URL", "http://127.0.0.1:2/")
    assert load_settings().binance_rest_url == "http://127.0.0.1:2"

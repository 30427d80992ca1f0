"""``ccxctl ui`` without a browser: the URL, its JSON, and a daemon whose WebSocket port is off."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import urllib.response

import pytest

from tests.ui.conftest import ccxctl


def test_json_gives_a_url_that_works_once(daemon_factory):
    d = daemon_factory()
    res = ccxctl(d, "ui", "--json")
    made = json.loads(res.stdout)
    assert made["url"] == f"http://127.0.0.1:{d.ws_port}{made['path']}" and made["expires_in"] == 60
    opener = urllib.request.build_opener(_NoRedirect)
    with opener.open(made["url"], timeout=10) as first:
        assert first.status == 303 and first.headers["Location"] == "/ui/"
    with pytest.raises(urllib.error.HTTPError) as again:
        opener.open(made["url"], timeout=10)
    assert again.value.code == 403
    again.value.close()
    assert made["path"].split("t=", 1)[1] not in d.log()  # the secret is never logged


def test_without_the_websocket_port_it_says_why(daemon_factory):
    d = daemon_factory({"CCXD_WS_ENABLED": "false"})
    res = ccxctl(d, "ui", "--no-browser", check=False)
    assert res.returncode != 0 and res.stdout == ""
    assert "the dashboard is served on the WebSocket port, which is off (ws_enabled = false)" in res.stderr


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None

    def http_error_303(self, req, fp, code, msg, headers):  # type: ignore[no-untyped-def]
        return urllib.response.addinfourl(fp, headers, req.full_url, code)

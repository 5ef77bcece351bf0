"""The desktop client over TLS: asked on first use (fingerprint and two buttons in the
connect dialog), then a padlock and the fingerprint in the status bar; a changed
certificate is refused in the dialog.  Screenshots in tests/gui/artifacts/."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gui_helpers import screenshot, wait_joined, wait_until

pytest.importorskip("cryptography")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tlsutil import TestCA, self_signed_pair  # noqa: E402

from parley.client.tls import KnownHosts, short_fingerprint  # noqa: E402
from parley.server import certs  # noqa: E402
from parley.server.app import Server  # noqa: E402
from parley.server.connection import Limits  # noqa: E402
from parley.server.transports.tls import server_context  # noqa: E402


@pytest.fixture
def tls_servers():
    made = []

    def start(cert, key, tls_port=0):
        srv = Server("127.0.0.1", 0, Limits(rate=1000, burst=1000), io_threads=2,
                     tls=server_context(cert, key), tls_port=tls_port).start()
        made.append(srv)
        return srv

    yield start
    for s in made:
        s.stop(grace=0.5)


def test_first_use_asks_then_shows_a_padlock_and_the_fingerprint(gui, tls_servers, tmp_path,
                                                                 private_config):
    cert, key = self_signed_pair(tmp_path, "first")
    fp = certs.fingerprint(cert)
    srv = tls_servers(cert, key)
    port = srv.tls_address[1]
    app = gui("--tls", "--port", str(port), "--name", "alice")
    wait_until(app, lambda: app.card.asking_trust, what="the trust question")
    assert app.card.tls_var.get()
    shown = app.card.trust_fp.cget("text").replace("\n", "")
    assert shown == "SHA-256" + fp
    assert "not signed by an authority" in app.card.message.cget("text")
    assert not app.status.locked
    screenshot(app, "tls-trust-question")
    app.card.trust_button.invoke()
    wait_joined(app)
    wait_until(app, lambda: app.status.locked, what="the padlock")
    label = app.status.lock_label.cget("text")
    assert label == f"TLSv1.3 \u00b7 trusted \u00b7 SHA-256 {short_fingerprint(fp)}"
    assert app.status.lock.winfo_ismapped()
    assert KnownHosts(str(private_config / "parley" / "known_hosts")).get("127.0.0.1", port) == fp
    wait_until(app, lambda: fp in "\n".join(app.chat.text.get("1.0", "end").splitlines()),
               what="the welcome line with the full fingerprint")
    screenshot(app, "tls-padlock")
    app.close()

    # a plain connection: no padlock
    plain = gui("--port", str(srv.address[1]), "--name", "bob")
    wait_joined(plain)
    assert not plain.status.locked
    plain.close()

    # another certificate on the same port: refused in the dialog, nothing asked
    srv.stop(grace=0.5)
    tls_servers(*self_signed_pair(tmp_path, "second"), tls_port=port)
    again = gui("--tls", "--port", str(port), "--name", "alice")
    wait_until(again, lambda: again.card.level == "error", what="the refusal")
    assert "HAS CHANGED" in again.card.message.cget("text")
    assert not again.card.asking_trust and not again.joined and not again.status.locked
    screenshot(again, "tls-changed")


def test_dont_trust_stores_nothing(gui, tls_servers, tmp_path, private_config):
    srv = tls_servers(*self_signed_pair(tmp_path))
    app = gui("--tls", "--port", str(srv.tls_address[1]), "--name", "alice")
    wait_until(app, lambda: app.card.asking_trust, what="the trust question")
    app.card.distrust_button.invoke()
    wait_until(app, lambda: app.card.level == "error", what="the refusal")
    assert "not trusted" in app.card.message.cget("text")
    assert not (private_config / "parley" / "known_hosts").exists()


def test_a_certificate_from_a_ca_is_not_asked_about(gui, tls_servers, tmp_path):
    ca = TestCA(tmp_path / "ca")
    srv = tls_servers(*ca.issue())
    app = gui("--tls", "--ca", ca.ca_file, "--port", str(srv.tls_address[1]), "--name", "carol",
              session_options={"backoff_initial": 1.0, "backoff_max": 1.0})   # a visible outage
    wait_joined(app)
    wait_until(app, lambda: app.status.locked, what="the padlock")
    assert "verified" in app.status.lock_label.cget("text")
    # the connection drops: no padlock while it is down; back (and caught up) over TLS
    app.session.reconnect_now()
    wait_until(app, lambda: app.state == "reconnecting", what="the outage")
    assert not app.status.locked
    wait_until(app, lambda: "Reconnected to" in app.chat.text.get("1.0", "end"),
               what="the reconnect")
    wait_until(app, lambda: app.status.locked, what="the padlock again")


def test_wrong_port_both_ways_is_explained_in_the_dialog(gui, tls_servers, tmp_path):
    ca = TestCA(tmp_path / "ca")
    srv = tls_servers(*ca.issue())
    plain_on_tls = gui("--port", str(srv.tls_address[1]), "--name", "dave")
    wait_until(plain_on_tls, lambda: "this port speaks TLS" in
               plain_on_tls.card.message.cget("text"), what="the tls_required error",
               detail=lambda: plain_on_tls.card.message.cget("text"))
    tls_on_plain = gui("--tls", "--ca", ca.ca_file, "--port", str(srv.address[1]), "--name", "erin")
    wait_until(tls_on_plain, lambda: "TLS port" in tls_on_plain.card.message.cget("text"),
               what="the handshake failure", detail=lambda: tls_on_plain.card.message.cget("text"))
    assert not plain_on_tls.joined and not tls_on_plain.joined

"""The terminal client over TLS: asked on first use (on a real pty, under tmux),
remembered in known_hosts, refused loudly when the certificate changes; scripting
mode refuses a new certificate unless --trust-on-first-use; --ca verifies."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cli_helpers import (FAST, PROMPT, Limits, _until_ready, artifact_name, client_argv,
                         client_env, run_client)

pytest.importorskip("cryptography")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tlsutil import TestCA, self_signed_pair  # noqa: E402

from parley.client.tls import KnownHosts  # noqa: E402
from parley.server import certs  # noqa: E402
from parley.server.app import Server  # noqa: E402
from parley.server.transports.tls import server_context  # noqa: E402


@pytest.fixture
def tls_servers():
    made = []

    def start(cert, key, tls_port=0, limits: Limits = FAST):
        srv = Server("127.0.0.1", 0, limits=limits, io_threads=2,
                     tls=server_context(cert, key), tls_port=tls_port).start()
        made.append(srv)
        return srv

    yield start
    for s in made:
        s.stop(grace=0.5)


def test_interactive_first_use_asks_then_chats_then_a_changed_certificate_is_refused(
        tmux, tls_servers, peers, tmp_path, request):
    config = tmp_path / "config"
    env = {"XDG_CONFIG_HOME": str(config)}
    cert, key = self_signed_pair(tmp_path, "first")
    fp = certs.fingerprint(cert)
    srv = tls_servers(cert, key)
    port = srv.tls_address[1]
    bob = peers(srv.address[1], "bob")                     # on the plain port

    tmux.start(client_argv(port, "--tls", "--name", "alice", "--plain"), env=env)
    text = "".join(tmux.wait_text("[y/N]"))
    assert "not signed by a known authority" in text and fp in text
    tmux.enter("y")
    _until_ready(tmux, timeout=8)
    text = tmux.text()
    assert "*** TLS (TLSv1.3), certificate trusted on first use; SHA-256 fingerprint\n" \
           f"    {fp}\n" in text, text
    bob.wait_join("alice")
    tmux.enter("hello bob, encrypted")
    bob.wait_message("hello bob, encrypted", "alice")
    bob.session.say("hello alice, in clear")
    tmux.wait_text("bob: hello alice, in clear")
    tmux.save(artifact_name(request) + "-first-use")
    assert KnownHosts(str(config / "parley" / "known_hosts")).get("127.0.0.1", port) == fp
    tmux.enter("/exit")
    assert tmux.wait_dead() == 0
    tmux.kill()

    # same certificate: no question
    tmux.start(client_argv(port, "--tls", "--name", "alice", "--plain"), env=env)
    _until_ready(tmux, timeout=8)
    assert "[y/N]" not in tmux.text()
    assert "certificate trusted before (known_hosts)" in tmux.text()
    tmux.enter("/exit")
    assert tmux.wait_dead() == 0
    tmux.kill()

    # another certificate on the same port: refused loudly, exit 1
    srv.stop(grace=0.5)
    tls_servers(*self_signed_pair(tmp_path, "second"), tls_port=port)
    tmux.start(client_argv(port, "--tls", "--name", "alice", "--plain"), env=env)
    assert tmux.wait_dead() == 1
    # the whole output, wrapped lines joined (-J), with what scrolled away (-S)
    text = tmux.tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", tmux.target)
    assert "HAS CHANGED" in text and fp in text, text
    tmux.save(artifact_name(request) + "-changed")


def test_interactive_no_means_no(tmux, tls_servers, tmp_path):
    config = tmp_path / "config"
    cert, key = self_signed_pair(tmp_path)
    srv = tls_servers(cert, key)
    tmux.start(client_argv(srv.tls_address[1], "--tls", "--name", "alice", "--plain"),
               env={"XDG_CONFIG_HOME": str(config)})
    tmux.wait_text("[y/N]")
    tmux.enter("n")
    assert tmux.wait_dead() == 1
    assert "is not trusted" in tmux.text()
    assert not (config / "parley" / "known_hosts").exists()


def test_scripting_refuses_a_new_certificate_unless_told_to_trust_it(tls_servers, tmp_path):
    env = client_env(XDG_CONFIG_HOME=str(tmp_path / "config"))
    cert, key = self_signed_pair(tmp_path, "first")
    srv = tls_servers(cert, key)
    port = srv.tls_address[1]
    r = run_client(port, "--tls", "--name", "bot", input="hi\n", env=env)
    assert r.returncode == 1
    assert "not trusted" in r.stderr and certs.fingerprint(cert) in r.stderr
    assert "--trust-on-first-use" in r.stderr
    r = run_client(port, "--tls", "--name", "bot", "--trust-on-first-use", input="hi\n", env=env)
    assert r.returncode == 0, r.stderr
    r = run_client(port, "--tls", "--name", "bot", input="again\n", env=env)
    assert r.returncode == 0, r.stderr
    srv.stop(grace=0.5)
    tls_servers(*self_signed_pair(tmp_path, "second"), tls_port=port)
    r = run_client(port, "--tls", "--name", "bot", "--trust-on-first-use", input="x\n", env=env)
    assert r.returncode == 1
    assert "HAS CHANGED" in r.stderr


def test_scripting_with_a_ca_file(tls_servers, tmp_path):
    ca = TestCA(tmp_path / "ca")
    srv = tls_servers(*ca.issue())
    env = client_env(XDG_CONFIG_HOME=str(tmp_path / "config"))
    r = run_client(srv.tls_address[1], "--tls", "--ca", ca.ca_file, "--name", "bot",
                   input="verified\n", env=env)
    assert r.returncode == 0, r.stderr
    other = TestCA(tmp_path / "other")
    r = run_client(srv.tls_address[1], "--tls", "--ca", other.ca_file, "--name", "bot",
                   input="x\n", env=env)
    assert r.returncode == 1 and "does not verify" in r.stderr


def test_wrong_port_both_ways_says_so(tls_servers, tmp_path):
    ca = TestCA(tmp_path / "ca")
    srv = tls_servers(*ca.issue())
    env = client_env(XDG_CONFIG_HOME=str(tmp_path / "config"))
    r = run_client(srv.tls_address[1], "--name", "bot", input="x\n", env=env)
    assert r.returncode == 1 and "this port speaks TLS" in r.stderr
    r = run_client(srv.address[1], "--tls", "--ca", ca.ca_file, "--name", "bot", input="x\n",
                   env=env)
    assert r.returncode == 1 and "TLS handshake failed" in r.stderr and "TLS port" in r.stderr

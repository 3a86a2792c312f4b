"""Registration tokens and TURN REST credentials (signaling.auth)."""

from peerlab.signaling.auth import ice_servers_for, make_token, turn_credentials, verify_token

# Computed independently with: printf 'lobby:alice' | openssl dgst -sha256 -hmac peerlab-secret
LOBBY_ALICE = "5bcc1dcd3e5051c29257abfd1118f1cdfbdeff3eee91a3ca7167f734ab0ba5ae"


def test_make_token_known_vector():
    assert make_token("peerlab-secret", "lobby", "alice") == LOBBY_ALICE


def test_verify_token_accepts_only_the_exact_token():
    assert verify_token("peerlab-secret", "lobby", "alice", LOBBY_ALICE)
    assert not verify_token("peerlab-secret", "lobby", "alice", LOBBY_ALICE.upper())
    assert not verify_token("other-secret", "lobby", "alice", LOBBY_ALICE)
    assert not verify_token("peerlab-secret", "lobby", "bob", LOBBY_ALICE)
    assert not verify_token("peerlab-secret", "lobby2", "alice", LOBBY_ALICE)
    assert not verify_token("peerlab-secret", "lobby", "alice", "")
    assert not verify_token("peerlab-secret", "lobby", "alice", "é\ud800")


def test_turn_credentials_known_vector():
    # printf '1700003600:alice' | openssl dgst -sha1 -hmac turn-secret -binary | base64
    username, credential = turn_credentials("turn-secret", "alice", 3600, 1_700_000_000.9)
    assert username == "1700003600:alice"
    assert credential == "E4vPY/Y6LWBxrSVVafd9LKs2lHA="


def test_ice_servers_credentials_only_on_turn_urls():
    urls = ["stun:stun.lab:3478", "turn:turn.lab:3478?transport=tcp", "turns:turn.lab:5349"]
    servers = ice_servers_for("alice", urls, "turn-secret", 3600, 1_700_000_000)
    assert servers == [
        {"urls": ["stun:stun.lab:3478"]},
        {
            "urls": ["turn:turn.lab:3478?transport=tcp"],
            "username": "1700003600:alice",
            "credential": "E4vPY/Y6LWBxrSVVafd9LKs2lHA=",
        },
        {
            "urls": ["turns:turn.lab:5349"],
            "username": "1700003600:alice",
            "credential": "E4vPY/Y6LWBxrSVVafd9LKs2lHA=",
        },
    ]


def test_ice_servers_without_turn_secret_have_no_credentials():
    servers = ice_servers_for("alice", ["stun:s:3478", "turn:t:3478"], None, 3600, 0)
    assert servers == [{"urls": ["stun:s:3478"]}, {"urls": ["turn:t:3478"]}]

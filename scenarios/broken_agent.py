"""A deliberately broken agent for checking that the suite catches a bug: it never acks.

`peerlab run <scenario> --broken-agent no-acks` runs this instead of `python -m peerlab.peer`
(through PEERLAB_PEER_MODULE); the suite must fail and name the missing acks.
"""

from peerlab.peer.__main__ import main
from peerlab.peer.link_core import LinkCore

# Every ack frame, automatic or by hand, leaves through LinkCore._send_acks.
LinkCore._send_acks = lambda self, now, acked_ids: None

if __name__ == "__main__":
    main()

"""A deliberately broken agent for checking that the suite catches a bug only loss can
show: a retransmitted copy of a message it already delivered is delivered again.

`peerlab run lossy_data_path --broken-agent double-delivery` runs this instead of
`python -m peerlab.peer` (through PEERLAB_PEER_MODULE); the scenario must fail and name the
duplicated messages. Over a perfect path no retransmission ever arrives, so no other
scenario notices.
"""

from peerlab.peer.__main__ import main
from peerlab.peer.reliability import Inbox, Receipt

_on_message = Inbox.on_message


def _delivers_duplicates_again(self: Inbox, message) -> Receipt:
    receipt = _on_message(self, message)
    if receipt.duplicate and not receipt.deliver and receipt.ack == (message.id,):
        return Receipt(deliver=(message,), ack=(message.id,))
    return receipt


Inbox.on_message = _delivers_duplicates_again

if __name__ == "__main__":
    main()

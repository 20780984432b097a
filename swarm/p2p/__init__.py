"""The swarm's libp2p layer: host, keys, gossip, adverts and the membership table.

py-libp2p 0.8.1's defaults are unsafe or slow for a swarm (plaintext accepted, 251 ms
per dial, gossip rate-limited and slowed down); ``host`` and ``gossip`` replace them.
"""

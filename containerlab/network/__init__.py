"""Container networking: bridges and veth pairs (``links``), address pools (``ipam``),
named networks (``networks``) and NAT with published ports (``nat``).

Import the submodules directly (``from containerlab.network import networks``): each is a
concept of its own, and ``links`` is the only one that talks netlink.
"""

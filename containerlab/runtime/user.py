"""``-u USER[:GROUP]``: who the container's command runs as, resolved inside the container.

Names are looked up in the *container's* /etc/passwd and /etc/group (after pivot_root), never
the host's: ``nobody`` may be 65534 in the image and something else on the host. Numeric ids
need no entry, as in Docker.
"""

from __future__ import annotations

import os

from containerlab.errors import ContainerError


def _read(path: str) -> list[list[str]]:
    try:
        with open(path) as f:
            return [line.rstrip("\n").split(":") for line in f if line.strip() and ":" in line]
    except FileNotFoundError:
        return []


def resolve(
    user: str, passwd: str = "/etc/passwd", group: str = "/etc/group"
) -> tuple[int, int, list[int], str]:
    """``(uid, gid, supplementary gids, home)`` for ``user[:group]`` in this root."""
    name, _, grp = user.partition(":")
    users = _read(passwd)
    entry = next((u for u in users if len(u) >= 7 and (u[0] == name or u[2] == name)), None)
    if entry is not None:
        uid, gid, home = int(entry[2]), int(entry[3]), entry[5] or "/"
    elif name.isdigit():
        # An unknown numeric uid gets gid 0, as in Docker; root's home is /root regardless.
        uid, gid, home = int(name), 0, "/root" if name == "0" else "/"
    else:
        raise ContainerError(f"unable to find user {name}: no matching entries in passwd file")
    groups = _read(group)
    if grp:
        g = next((g for g in groups if len(g) >= 3 and (g[0] == grp or g[2] == grp)), None)
        if g is not None:
            gid = int(g[2])
        elif grp.isdigit():
            gid = int(grp)
        else:
            raise ContainerError(f"unable to find group {grp}: no matching entries in group file")
    username = entry[0] if entry is not None else None
    extra = sorted(
        {int(g[2]) for g in groups if len(g) >= 4 and username and username in g[3].split(",")}
        - {gid}
    )
    return uid, gid, extra, home


def switch(user: str) -> dict[str, str]:
    """Become ``user`` (groups first: after setuid we could not change them any more)."""
    uid, gid, extra, home = resolve(user)
    os.setgroups(extra)
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    return {"HOME": home}

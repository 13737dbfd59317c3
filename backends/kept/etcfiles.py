"""/etc/hostname, /etc/hosts and /etc/resolv.conf as Docker writes them, for the backends
that write them themselves (native, lxc): files in the container's record directory (as
Docker's /var/lib/docker/containers/ID/hosts), bind-mounted over the image's.

The content follows moby 20.10 (libnetwork etchosts.Build, resolvconf.FilterResolvDNS):
- hosts: Docker's fixed block, then --add-host lines; with --network host and no
  --add-host, a copy of the host's own /etc/hosts instead;
- resolv.conf: the host's, with localhost and IPv6 nameservers dropped (Google's two when
  none is left); with --network host, the host's as it is.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ctr.spec import ContainerSpec, Mount

DEFAULT_HOSTS = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)
_IPV4 = r"(25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)(\.(25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)){3}"
_IPV6 = r"([0-9A-Fa-f]{0,4}:){2,7}([0-9A-Fa-f]{0,4})(%\w+)?"
_LOCALHOST_NS = re.compile(r"(?m)^nameserver\s+((127\.([0-9]{1,3}\.){2}[0-9]{1,3})|(::1)$)\s*\n*")
_IPV6_NS = re.compile(r"(?m)^nameserver\s+" + _IPV6 + r"\s*\n*")
_NAMESERVER = re.compile(r"(?m)^\s*nameserver\s*((" + _IPV4 + r")|(" + _IPV6 + r"))\s*$")
DEFAULT_DNS = ("nameserver 8.8.8.8", "nameserver 8.8.4.4")
FILES = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def host_resolv_conf() -> str:
    """The host's resolv.conf as Docker picks it: systemd-resolved's upstream file when
    /etc/resolv.conf names only its stub at 127.0.0.53."""
    text = _read("/etc/resolv.conf")
    stub_only = [m.group(1) for m in _NAMESERVER.finditer(text)] == ["127.0.0.53"]
    if stub_only and os.path.exists("/run/systemd/resolve/resolv.conf"):
        return _read("/run/systemd/resolve/resolv.conf")
    return text


def resolv_conf(host_network: bool, host_text: str | None = None) -> str:
    text = host_resolv_conf() if host_text is None else host_text
    if host_network:
        return text
    cleaned = _IPV6_NS.sub("", _LOCALHOST_NS.sub("", text))  # no IPv6 on ctr's networks
    if not _NAMESERVER.search(cleaned):
        cleaned += "\n" + "\n".join(DEFAULT_DNS)
    return cleaned


def hosts(host_network: bool, extra_hosts: tuple[str, ...] = (), host_text: str | None = None) -> str:
    """--add-host entries are "NAME:IP" (split at the first colon, as Docker does)."""
    if host_network and not extra_hosts:
        return _read("/etc/hosts") if host_text is None else host_text
    return DEFAULT_HOSTS + "".join(f"{ip}\t{name}\n" for name, _, ip in (h.partition(":") for h in extra_hosts))


def init_layer(directory: Path) -> str:
    """A layer of empty files where the bind mounts go, above the image and below the
    writable layer (Docker's "-init" layer): the mount points never show up in the
    container's own changes (commit, migrate, export)."""
    layer = directory / "init"
    (layer / "etc").mkdir(parents=True, exist_ok=True)
    for target in FILES:
        path = layer / target.lstrip("/")
        if not path.exists():
            path.touch(0o644)
    return str(layer)


def write(directory: Path, spec: ContainerSpec, hostname: str) -> tuple[Mount, ...]:
    """Write the three files into `directory`; the mounts that put them in the container,
    except where the user mounts something of their own at that path (Docker's rule)."""
    host_net = spec.network == "host"
    contents = {
        "/etc/hostname": hostname + "\n",
        "/etc/hosts": hosts(host_net, spec.extra_hosts),
        "/etc/resolv.conf": resolv_conf(host_net),
    }
    taken = {os.path.normpath(m.target) for m in spec.mounts}
    mounts = []
    for target, text in contents.items():
        if target in taken:
            continue
        path = directory / os.path.basename(target)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        mounts.append(Mount(str(path), target))
    return tuple(mounts)

"""/etc/hosts and /etc/resolv.conf as moby 20.10 writes them (ctr.backends.kept.etcfiles)."""

from ctr.backends.kept import etcfiles


def test_resolv_conf_drops_localhost_and_ipv6_nameservers():
    text = (
        "search lan\nnameserver 127.0.0.1\nnameserver 10.0.0.2\nnameserver ::1\nnameserver fe80::1\noptions ndots:2\n"
    )
    assert etcfiles.resolv_conf(False, text) == "search lan\nnameserver 10.0.0.2\noptions ndots:2\n"


def test_resolv_conf_falls_back_to_googles_servers():
    assert (
        etcfiles.resolv_conf(False, "nameserver 127.0.0.53\noptions edns0\n")
        == "options edns0\n\nnameserver 8.8.8.8\nnameserver 8.8.4.4"
    )


def test_resolv_conf_is_the_hosts_own_on_the_host_network():
    assert etcfiles.resolv_conf(True, "nameserver 127.0.0.1\n") == "nameserver 127.0.0.1\n"


def test_hosts_layout_and_extra_hosts():
    assert etcfiles.hosts(False).startswith("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    assert etcfiles.hosts(False, ("a.b:1.2.3.4", "c:::1")).endswith("ff02::2\tip6-allrouters\n1.2.3.4\ta.b\n::1\tc\n")
    assert etcfiles.hosts(True, (), host_text="127.0.0.1 me\n") == "127.0.0.1 me\n"
    assert etcfiles.hosts(True, ("x:1.1.1.1",), host_text="127.0.0.1 me\n").startswith(etcfiles.DEFAULT_HOSTS)

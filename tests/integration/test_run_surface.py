"""Docker's run surface (issue 15): each case runs through `docker run` on the real engine
and through ctr on every backend, and ctr must answer exactly as the engine did.

The oracle runs ctr's own images (loaded into the engine by the docker backend as
ctr.local/NAME), so the image is the same file for the engine and for ctr.
"""

from __future__ import annotations

import io
import secrets
import subprocess
import tarfile

import pytest

from tests.conftest import CTR, backends_param


def _group_layer() -> bytes:
    """A layer over busybox: users with memberships in /etc/group, as real images have."""
    files = {
        "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
                      "app:x:1000:1000:app:/home/app:/bin/sh\n",
        "etc/group": "root:x:0:\nwheel:x:10:app\naudio:x:29:app,nobody\napp:x:1000:\n"
                     "staff:x:50:\nnobody:x:65534:\n",
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("etc")
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="session")
def oracle(ctr_root, request):
    """`docker run --rm --network none [flags] IMAGE CMD...` on the engine: stdout, stderr, exit code."""
    from ctr.backends import probe as probe_backend

    info = probe_backend("docker")
    if not info.usable:
        if request.config.getoption("--require-backends"):
            pytest.fail(f"backend docker is required but unusable: {info.reason}")
        pytest.skip(f"no docker engine for the oracle: {info.reason}")

    def run(*args: str, image: str = "busybox", network: str = "none") -> subprocess.CompletedProcess:
        subprocess.run([*CTR, "--root", str(ctr_root), "--backend", "docker", "run", "--rm", image, "true"],
                       check=True, capture_output=True, timeout=120)  # loads ctr's image into the engine
        return subprocess.run(["docker", "run", "--rm", "--network", network, *_engine_args(args, image)],
                              capture_output=True, text=True, timeout=120)

    return run


def _engine_args(args: tuple[str, ...], image: str) -> list[str]:
    """The ctr image name in `args` (given as IMAGE) becomes its engine name."""
    return [f"ctr.local/{image}:latest" if a == "IMAGE" else a for a in args]


@pytest.fixture(scope="session")
def group_image(paths):
    """busybox plus /etc/passwd and /etc/group with memberships; removed from ctr and the engine afterwards."""
    from ctr.backends.images import ImageStore

    store = ImageStore(paths)
    busybox = store.get("busybox")
    name = f"ctr-test-groups-{secrets.token_hex(4)}"
    store.create(f"{name}:latest", [*(store.blob_path(d) for d in busybox.layer_digests), _group_layer()], busybox.config)
    yield name
    subprocess.run(["docker", "rmi", "-f", f"ctr.local/{name}:latest"], capture_output=True)
    store.remove(f"{name}:latest")


def _ctr_run(ctr, backend: str, *args: str, image: str = "busybox"):
    return ctr("--backend", backend, "run", "--rm", *[image if a == "IMAGE" else a for a in args])


@backends_param()
@pytest.mark.parametrize("user", ["nobody", "app", "root", "1234", "app:staff", "nobody:audio"])
def test_supplementary_groups_are_dockers(ctr, backend, oracle, group_image, user):
    expected = oracle("-u", user, "IMAGE", "id", image=group_image)
    assert expected.returncode == 0, expected.stderr
    r = _ctr_run(ctr, backend.name, "-u", user, "IMAGE", "id", image=group_image)
    assert (r.returncode, r.stdout) == (0, expected.stdout), r.stderr


@backends_param()
def test_dev_has_what_dockers_has(ctr, backend, oracle):
    # `ls` without -a: liblxc keeps its /dev/.lxc-boot-id (a README difference).
    expected = oracle("IMAGE", "ls", "/dev")
    assert expected.returncode == 0, expected.stderr
    r = _ctr_run(ctr, backend.name, "IMAGE", "ls", "/dev")
    assert (r.returncode, r.stdout) == (0, expected.stdout), r.stderr


ETC_FILES = "cat /etc/hostname; echo --; cat /etc/hosts; echo --; cat /etc/resolv.conf; echo --; ls -ln /etc/hostname /etc/hosts /etc/resolv.conf | cut -c1-35; grep -cE ' /etc/(hosts|hostname|resolv.conf) ' /proc/self/mountinfo"


@backends_param()
@pytest.mark.parametrize("flags", [("--network", "none"), ("--network", "host"), ("--network", "none", "--read-only")],
                         ids=["none", "host", "read-only"])
def test_etc_hostname_hosts_resolv_conf_are_dockers(ctr, backend, oracle, flags):
    network, rest = flags[1], flags[2:]
    expected = oracle("-h", "box", *rest, "IMAGE", "sh", "-c", ETC_FILES, network=network)
    assert expected.returncode == 0, expected.stderr
    r = _ctr_run(ctr, backend.name, "--network", network, "-h", "box", *rest, "IMAGE", "sh", "-c", ETC_FILES)
    assert (r.returncode, r.stdout) == (0, expected.stdout), r.stderr


@backends_param()
def test_etc_hostname_is_the_generated_hostname(ctr, backend):
    r = _ctr_run(ctr, backend.name, "IMAGE", "sh", "-c", 'test "$(cat /etc/hostname)" = "$(hostname)" && echo same')
    assert r.stdout == "same\n", r.stderr


@backends_param()
def test_a_volume_at_etc_hosts_wins(ctr, backend, tmp_path):
    (tmp_path / "hosts").write_text("10.0.0.1 mine\n")
    r = _ctr_run(ctr, backend.name, "-v", f"{tmp_path / 'hosts'}:/etc/hosts:ro", "IMAGE", "cat", "/etc/hosts")
    assert r.stdout == "10.0.0.1 mine\n", r.stderr

"""Inputs the convert tests share: LXC configs with every key ctr can and cannot express, a `docker inspect`."""

# Every key ctr can express, in both cgroup versions' spellings where they differ.
CONVERTIBLE_LXC = """\
lxc.uts.name = "web1"
lxc.init.cmd = /bin/httpd -f -p 8080
lxc.init.cwd = /srv
lxc.init.uid = 1000
lxc.init.gid = 100
lxc.environment = A=1
lxc.environment = B=two words
lxc.mount.entry = /tmp tmp/host none bind,create=dir 0 0
lxc.mount.entry = /etc/hostname etc/host-name none ro,bind,create=file 0 0
lxc.rootfs.options = ro
lxc.cgroup.memory.limit_in_bytes = 256M
lxc.cgroup.cpu.cfs_quota_us = 50000
lxc.cgroup.cpu.cfs_period_us = 100000
lxc.cgroup.pids.max = 64
lxc.cap.drop = sys_module mac_admin mac_override sys_time
lxc.net.0.type = none
lxc.ephemeral = 1
"""

# What `lxc-create -t busybox` writes, and more: none of these has a ctr equivalent.
UNCONVERTIBLE_LXC = """\
lxc.net.0.type = veth
lxc.net.0.link = lxcbr0
lxc.net.0.hwaddr = 00:16:3e:xx:xx:xx
lxc.apparmor.profile = generated
lxc.apparmor.allow_nesting = 1
lxc.rootfs.path = dir:/var/lib/lxc/web1/rootfs
lxc.signal.halt = SIGUSR1
lxc.autodev = 1
lxc.tty.max = 5
lxc.mount.auto = cgroup:mixed proc:mixed sys:ro
lxc.mount.entry = shm dev/shm tmpfs defaults,create=dir 0 0
lxc.idmap = u 0 100000 65536
lxc.hook.pre-start = /bin/true
lxc.include = /usr/share/lxc/config/common.conf
lxc.start.auto = 1
lxc.cgroup.devices.allow = c 1:3 rwm
lxc.init.groups = 10,20
lxc.environment = FROM_HOST
"""


DOCKER_INSPECT = {
    "Id": "f" * 64,
    "Created": "2026-01-01T00:00:00Z",
    "Path": "sh",
    "Args": ["-c", "x"],
    "State": {"Status": "exited", "Running": False},
    "Image": "sha256:" + "a" * 64,
    "Name": "/web",
    "RestartCount": 0,
    "Driver": "overlay2",
    "Platform": "linux",
    "MountLabel": "",
    "ProcessLabel": "",
    "AppArmorProfile": "",
    "GraphDriver": {"Name": "overlay2", "Data": {}},
    "NetworkSettings": {},
    "Mounts": [
        {"Type": "bind", "Source": "/srv/data", "Destination": "/data", "RW": False},
        {
            "Type": "volume",
            "Name": "cache",
            "Source": "/var/lib/docker/volumes/cache/_data",
            "Destination": "/cache",
            "RW": True,
        },
    ],
    "Config": {
        "Hostname": "f" * 12,
        "Domainname": "",
        "User": "1:1",
        "AttachStdin": False,
        "AttachStdout": True,
        "Tty": True,
        "OpenStdin": True,
        "StdinOnce": False,
        "Env": ["PATH=/bin", "A=1"],
        "Cmd": ["-c", "x"],
        "Image": "busybox:latest",
        "Volumes": {"/cache": {}},
        "WorkingDir": "/w",
        "Entrypoint": ["sh"],
        "Labels": {"team": "a"},
        "ExposedPorts": {"80/tcp": {}},
        "StopSignal": "SIGQUIT",
    },
    "HostConfig": {
        "Binds": ["/srv/data:/data:ro"],
        "NetworkMode": "default",
        "PortBindings": {"80/tcp": [{"HostPort": "8080"}]},
        "RestartPolicy": {"Name": "always", "MaximumRetryCount": 0},
        "AutoRemove": True,
        "CapAdd": ["NET_ADMIN"],
        "CapDrop": ["MKNOD"],
        "Privileged": False,
        "ReadonlyRootfs": True,
        "Memory": 64 << 20,
        "MemorySwap": 256 << 20,
        "NanoCpus": 1500000000,
        "PidsLimit": 100,
        "ShmSize": 67108864,
        "SecurityOpt": ["no-new-privileges", "seccomp=unconfined"],
        "LogConfig": {"Type": "json-file", "Config": {}},
        "Dns": [],
        "ExtraHosts": ["db:10.0.0.2"],
        "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}],
        "IpcMode": "private",
        "Runtime": "runc",
        "Isolation": "",
        "ConsoleSize": [0, 0],
    },
}

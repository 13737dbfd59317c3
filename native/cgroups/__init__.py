"""The cgroup drivers of the native runtime: v1 (one directory per hierarchy) and v2 (one directory).

Two implementations (v1.py, v2.py) of one interface (base.py), picked by
driver.cgroup_driver() as runc's `manager.New` and youki's `create_cgroup_manager` do.
What both share: the kernel files behind one seam (cgroupfs.py), the limits and their
kernel units (limits.py), what is mounted where (mounted.py); prime.py warms the kernel's
cgroup lock before a container's first move.
"""

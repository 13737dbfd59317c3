"""The native runtime: namespaces, mounts, cgroups, capabilities and seccomp, done by ctr itself."""

/* A tiny static probe (as crun's tests/init.c): call each syscall with harmless, mostly
 * invalid arguments in a child of its own and print "name(arg0) ok|ERRNO|signal N", so that
 * a refusal by seccomp (EPERM, ENOSYS) shows apart from the kernel's own EINVAL, EFAULT, EBADF.
 * Compiled by tests/integration/test_security.py; run under every backend and under docker run. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/sched.h>

struct call { const char *name; long nr; long a[6]; };
#define C(n, ...) { #n, SYS_##n, { __VA_ARGS__ } }
static struct call calls[] = {
  C(unshare, CLONE_NEWUSER), C(unshare, CLONE_NEWNS), C(unshare, CLONE_NEWUTS), C(unshare, 0),
  C(setns, -1, 0), C(keyctl, 0, 0, 0, 0, 0), C(add_key, 0, 0, 0, 0, 0), C(request_key, 0, 0, 0, 0),
  C(bpf, -1, 0, 0), C(perf_event_open, 0, 0, -1, -1, 0), C(open_by_handle_at, -1, 0, 0),
  C(name_to_handle_at, -1, 0, 0, 0, 0), C(mount, 0, 0, 0, 0, 0), C(umount2, 0, 0), C(pivot_root, 0, 0),
  C(clone3, 0, 0), C(userfaultfd, -1), C(ptrace, -1, 0, 0, 0), C(process_vm_readv, 0, 0, 0, 0, 0, -1),
  C(kcmp, 0, 0, -1, 0, 0), C(pidfd_getfd, -1, -1, 0), C(syslog, -1, 0, 0), C(personality, 0xffffffff),
  C(personality, 0x0040000), C(get_mempolicy, 0, 0, 0, 0, -1), C(set_mempolicy, -1, 0, 0), C(mbind, 0, 0, -1, 0, 0, 0),
  C(io_uring_setup, 0, 0), C(fsopen, 0, 0), C(fsmount, -1, 0, 0), C(fspick, -1, 0, 0), C(open_tree, -1, 0, -1),
  C(move_mount, -1, 0, -1, 0, -1), C(mount_setattr, -1, 0, -1, 0, 0), C(quotactl, 0, 0, 0, 0), C(quotactl_fd, -1, 0, 0, 0),
  C(acct, 0), C(chroot, 0), C(sethostname, 0, 100000), C(setdomainname, 0, 100000), C(init_module, 0, 0, 0),
  C(iopl, 99), C(ioperm, 0, 0, 99), C(settimeofday, 0, 0), C(clock_settime, -1, 0), C(vhangup),
  C(reboot, 0, 0, 0, 0), C(kexec_load, 0, 0, 0, -1), C(lookup_dcookie, 0, 0, 0), C(fanotify_init, -1, 0),
  C(memfd_secret, -1), C(landlock_create_ruleset, 0, 0, -1), C(process_madvise, -1, 0, 0, 0, -1),
  C(socket, 40, 1, 0), C(socket, 16, 3, 9), C(socket, 1, 1, 0), C(epoll_pwait2, -1, 0, 0, 0, 0, 0),
  C(close_range, 3, 2, 0), C(faccessat2, -1, 0, 0, -1), C(futex_waitv, 0, 0, -1, 0, 0), C(move_pages, 0, 0, 0, 0, 0, -1),
  C(migrate_pages, 0, 0, 0, 0), C(swapon, 0, 0), C(sysfs, 99, 0, 0), C(uselib, 0), C(ustat, 0, 0), C(nfsservctl, 0, 0, 0),
  C(pkey_alloc, -1, 0), C(rseq, 0, 0, -1, 0), C(openat2, -1, 0, 0, 0), C(pidfd_open, -1, 0), C(pidfd_send_signal, -1, 0, 0, -1),
  C(set_mempolicy_home_node, 0, 0, 0, -1), {"cachestat", 451, {-1,0,0,-1}}, {"fchmodat2", 452, {-1,0,0,-1}}, {"map_shadow_stack", 453, {0,0,-1}},
  C(getcpu, 0, 0, 0), C(sched_setattr, -1, 0, 0), C(setrlimit, 99, 0), C(getrandom, 0, 0, 0),
};
int main(int argc, char **argv) {
  (void)argc; (void)argv;
  for (size_t i = 0; i < sizeof calls / sizeof *calls; i++) {
    struct call *c = &calls[i];
    pid_t pid = fork();
    if (pid == 0) {
      errno = 0;
      long r = syscall(c->nr, c->a[0], c->a[1], c->a[2], c->a[3], c->a[4], c->a[5]);
      printf("%s(%#lx) %s\n", c->name, c->a[0], r >= 0 ? "ok" : strerrorname_np(errno));
      fflush(stdout);
      _exit(0);
    }
    int st; waitpid(pid, &st, 0);
    if (WIFSIGNALED(st)) printf("%s(%#lx) signal %d\n", c->name, c->a[0], WTERMSIG(st));
  }
  /* clone with a namespace flag: the argument rule of the clone syscall */
  pid_t p = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
  if (p == 0) _exit(0);
  if (p > 0) { waitpid(p, 0, 0); printf("clone(NEWUSER) ok\n"); } else printf("clone(NEWUSER) %s\n", strerrorname_np(errno));
  p = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
  if (p == 0) _exit(0);
  if (p > 0) { waitpid(p, 0, 0); printf("clone(plain) ok\n"); } else printf("clone(plain) %s\n", strerrorname_np(errno));
  return 0;
}

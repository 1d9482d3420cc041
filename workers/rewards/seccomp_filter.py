"""Write the code sandbox's seccomp filter, as BPF for `bwrap --seccomp FD`, to stdout.

Run by an interpreter that has libseccomp's own Python binding (Debian's
python3-seccomp, for /usr/bin/python3); workers.rewards.sandbox runs it once per
process and keeps the bytes. libseccomp writes the architecture checks and the
argument comparisons, which are easy to get wrong by hand.
"""

import errno
import sys

import seccomp

# Each refused with EPERM. Why each is here:
REFUSED = {
    "socket": "no socket of any family: no TCP to Postgres or Redis, no Unix socket, no netlink",
    "io_uring_setup": "io_uring can open sockets and files without the syscalls this filter sees",
    "io_uring_enter": "as above",
    "io_uring_register": "as above",
    "unshare": "new namespaces would give the code root over a namespace of its own",
    "setns": "joining another namespace",
    "mount": "remounting what bwrap made read-only or hid",
    "umount2": "uncovering what bwrap's mounts hide",
    "pivot_root": "a different root",
    "chroot": "a different root",
    "open_tree": "the new mount API: same reason as mount",
    "move_mount": "as above",
    "fsopen": "as above",
    "fsmount": "as above",
    "fspick": "as above",
    "fsconfig": "as above",
    "mount_setattr": "as above",
    "ptrace": "reading or steering another process (the runner that holds the results)",
    "process_vm_readv": "reading another process's memory",
    "process_vm_writev": "writing another process's memory",
    "bpf": "kernel programs and maps: a large attack surface",
    "perf_event_open": "kernel profiling: side channels and a large attack surface",
    "userfaultfd": "a common tool for kernel exploits (stalling the kernel on a page fault)",
    "keyctl": "the kernel keyring is not namespaced: keys of other processes",
    "add_key": "as above",
    "request_key": "as above",
    "kexec_load": "loading a kernel",
    "init_module": "loading kernel modules",
    "finit_module": "as above",
    "delete_module": "as above",
}
# clone() with any of these flags makes a namespace, the same as unshare().
NAMESPACE_FLAGS = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}


def build() -> "seccomp.SyscallFilter":
    sandbox_filter = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in REFUSED:
        sandbox_filter.add_rule(seccomp.ERRNO(errno.EPERM), name)
    for flag in NAMESPACE_FLAGS.values():
        sandbox_filter.add_rule(seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    # clone3 passes its flags in memory, which seccomp cannot read: refuse it as "not
    # implemented", so that glibc falls back to clone(), whose flags the rules above see.
    sandbox_filter.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    return sandbox_filter


if __name__ == "__main__":
    build().export_bpf(sys.stdout.buffer)

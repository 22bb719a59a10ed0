#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "DatapathABI.h"

#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif

int ppctl_enter_netns(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = setns(fd, CLONE_NEWNET);
	int err = errno;
	close(fd);
	return rc < 0 ? -err : 0;
}

int ppctl_socket_in_netns(const char *path, int domain, int type, int protocol)
{
	int here = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (here < 0)
		return -errno;
	int rc = ppctl_enter_netns(path);
	if (rc < 0) {
		close(here);
		return rc;
	}
	int sock = socket(domain, type | SOCK_CLOEXEC, protocol);
	int err = errno;
	if (setns(here, CLONE_NEWNET) < 0) {
		/* The thread is stuck in the wrong namespace: nothing sane is left. */
		_exit(70);
	}
	close(here);
	return sock < 0 ? -err : sock;
}

int ppctl_is_bpffs(const char *path)
{
	struct statfs st;
	if (statfs(path, &st) < 0)
		return -errno;
	return st.f_type == BPF_FS_MAGIC ? 1 : 0;
}

int ppctl_mount_bpffs(const char *path)
{
	if (mount("bpf", path, "bpf", 0, "mode=0700") < 0)
		return -errno;
	return 0;
}

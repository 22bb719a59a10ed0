#define _GNU_SOURCE
#include <errno.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/vfs.h>
#include <stdlib.h>
#include <unistd.h>

/* Also compiles ppctl_abi.h with the host compiler, so that its _Static_asserts
 * check the layout the control plane sees (clang -target bpf checks the programs'). */
#include "DatapathABI.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif
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

int ppctl_is_cgroup2(const char *path)
{
	struct statfs st;
	if (statfs(path, &st) < 0)
		return -errno;
	return st.f_type == CGROUP2_SUPER_MAGIC ? 1 : 0;
}

int ppctl_mount_bpffs(const char *path)
{
	if (mount("bpf", path, "bpf", 0, "mode=0700") < 0)
		return -errno;
	return 0;
}

/* A veth's driver name and its peer's ifindex, asked through ethtool ioctls, which
 * answer for the calling thread's network namespace. (/sys/class/net is the
 * mount's: after setns into a balancer namespace it still shows the host's
 * devices.) veth's first ethtool statistic is "peer_ifindex". Returns the peer's
 * ifindex, 0 if NAME is not a veth or netkit, or -errno. */
static long veth_peer_ifindex(int fd, const char *name)
{
	struct ethtool_drvinfo info = { .cmd = ETHTOOL_GDRVINFO };
	struct ethtool_stats *stats;
	struct ifreq ifr;
	long peer;

	memset(&ifr, 0, sizeof(ifr));
	if (strlen(name) >= sizeof(ifr.ifr_name))
		return -EINVAL;
	strcpy(ifr.ifr_name, name);
	ifr.ifr_data = (void *)&info;
	if (ioctl(fd, SIOCETHTOOL, &ifr) < 0)
		return errno == EOPNOTSUPP ? 0 : -errno;
	if (strcmp(info.driver, "veth") != 0 && strcmp(info.driver, "netkit") != 0)
		return 0;
	if (info.n_stats == 0 || info.n_stats > 4096)
		return 0;
	stats = calloc(1, sizeof(*stats) + info.n_stats * sizeof(__u64));
	if (!stats)
		return -ENOMEM;
	stats->cmd = ETHTOOL_GSTATS;
	stats->n_stats = info.n_stats;
	ifr.ifr_data = (void *)stats;
	peer = ioctl(fd, SIOCETHTOOL, &ifr) < 0 ? -errno : (long)stats->data[0];
	free(stats);
	return peer;
}

int ppctl_iface_redirects_to_peer(const char *name)
{
	char peer_name[IF_NAMESIZE];
	long ifindex, peer;
	int fd;

	ifindex = if_nametoindex(name);
	if (ifindex == 0)
		return -errno;
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	peer = veth_peer_ifindex(fd, name);
	/* bpf_redirect_peer drops packets whose peer is in the same namespace: a
	 * device here with the peer's ifindex whose own peer is NAME is that peer. */
	if (peer > 0 && peer != ifindex && if_indextoname((unsigned)peer, peer_name) &&
	    veth_peer_ifindex(fd, peer_name) == ifindex)
		peer = 0;
	close(fd);
	return peer > 0 ? 1 : (int)peer;
}

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

/* Reads a small integer from /sys/class/net/NAME/FILE; -1 if it cannot. */
static long read_sysfs_long(const char *name, const char *file)
{
	char path[128];
	long value = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/class/net/%s/%s", name, file);
	f = fopen(path, "re");
	if (!f)
		return -1;
	if (fscanf(f, "%ld", &value) != 1)
		value = -1;
	fclose(f);
	return value;
}

int ppctl_iface_redirects_to_peer(const char *name)
{
	struct ethtool_drvinfo info = { .cmd = ETHTOOL_GDRVINFO };
	struct ifreq ifr;
	char peer_name[IF_NAMESIZE];
	long ifindex, iflink;
	int fd, rc;

	memset(&ifr, 0, sizeof(ifr));
	if (strlen(name) >= sizeof(ifr.ifr_name))
		return -EINVAL;
	strcpy(ifr.ifr_name, name);
	ifr.ifr_data = (void *)&info;
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	rc = ioctl(fd, SIOCETHTOOL, &ifr);
	close(fd);
	if (rc < 0)
		return errno == EOPNOTSUPP ? 0 : -errno;
	if (strcmp(info.driver, "veth") != 0 && strcmp(info.driver, "netkit") != 0)
		return 0;

	/* bpf_redirect_peer drops packets whose peer is in the same namespace. */
	ifindex = read_sysfs_long(name, "ifindex");
	iflink = read_sysfs_long(name, "iflink");
	if (ifindex < 0 || iflink < 0)
		return 0;
	if (iflink != ifindex && if_indextoname((unsigned)iflink, peer_name) &&
	    read_sysfs_long(peer_name, "iflink") == ifindex)
		return 0;
	return 1;
}

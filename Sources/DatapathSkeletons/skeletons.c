#include <errno.h>
#include <stdlib.h>

#include "DatapathSkeletons.h"

int ppctl_skeleton_open(struct bpf_object_skeleton *skeleton, const void *obj, size_t len,
			const char *pin_root)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = pin_root);

	/* libbpf reads the bytes while it opens the object and keeps copies of what it
	 * needs; the skeleton only borrows them. */
	skeleton->data = (void *)obj;
	skeleton->data_sz = len;
	return bpf_object__open_skeleton(skeleton, &opts);
}

/* NAME__open_opts, with the object given instead of embedded in the skeleton. */
#define PPCTL_SKELETON_OPEN(name, obj, len, pin_root)                              \
	do {                                                                       \
		struct name *skel = calloc(1, sizeof(*skel));                      \
		int err;                                                           \
		if (!skel) {                                                       \
			errno = ENOMEM;                                            \
			return NULL;                                               \
		}                                                                  \
		err = name##__create_skeleton(skel);                               \
		if (!err)                                                          \
			err = ppctl_skeleton_open(skel->skeleton, obj, len, pin_root); \
		if (err) {                                                         \
			name##__destroy(skel);                                     \
			errno = -err;                                              \
			return NULL;                                               \
		}                                                                  \
		return skel;                                                       \
	} while (0)

struct lb_tc *ppctl_tc_open(const void *obj, size_t len, const char *pin_root)
{
	PPCTL_SKELETON_OPEN(lb_tc, obj, len, pin_root);
}

struct lb_sock *ppctl_sock_open(const void *obj, size_t len, const char *pin_root)
{
	PPCTL_SKELETON_OPEN(lb_sock, obj, len, pin_root);
}

#include <errno.h>
#include <stdlib.h>

#include "FaultABI.h"
#include "DatapathSkeletons.h"

struct fault *ppctl_fault_open(const void *obj, size_t len)
{
	struct fault *skel = calloc(1, sizeof(*skel));
	int err;

	if (!skel) {
		errno = ENOMEM;
		return NULL;
	}
	err = fault__create_skeleton(skel);
	if (!err)
		err = ppctl_skeleton_open(skel->skeleton, obj, len, NULL);
	if (err) {
		fault__destroy(skel);
		errno = -err;
		return NULL;
	}
	return skel;
}

/* The rule struct of the test fault injector (bpf/testing/fault.bpf.c) and its
 * skeleton (bpf/testing/skel/fault.skel.h). */
#include <stddef.h>
#include "fault_abi.h"
#include "fault.skel.h"

/// The fault injector opened over its embedded object (`len` bytes, read during
/// the call only), not loaded yet: fault__load, fault__destroy. NULL with errno
/// set on failure.
struct fault *ppctl_fault_open(const void *obj, size_t len);

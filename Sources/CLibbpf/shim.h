#ifndef PPCTL_CLIBBPF_SHIM_H
#define PPCTL_CLIBBPF_SHIM_H
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#endif

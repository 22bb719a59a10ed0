/* The rule struct of the test fault injector (bpf/testing/fault.bpf.c). */
#include "fault_abi.h"

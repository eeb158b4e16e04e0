/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Transitional: the shared header was split (tcptrack/abi.h and the headers
 * beside it). Kept only for an includer outside this change's reach; new code
 * includes the header it needs.
 */
#ifndef TCPTRACK_FLOW_H
#define TCPTRACK_FLOW_H

#include "tcptrack/abi.h"
#include "tcptrack/lifecycle.h"
#include "tcptrack/store.h"
#include "tcptrack/filter_vm.h"

#endif /* TCPTRACK_FLOW_H */

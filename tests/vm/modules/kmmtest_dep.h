/* SPDX-License-Identifier: GPL-2.0 */
#ifndef KMMTEST_DEP_H
#define KMMTEST_DEP_H

/* Exported by kmmtest_dep; always returns 42. */
int kmmtest_dep_value(void);

#endif

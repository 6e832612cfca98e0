/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The libFuzzer entry points each harness defines (prototypes here so
 * -Wmissing-prototypes is satisfied without externs in the .c files).
 */
#ifndef VTMEM_FUZZ_H
#define VTMEM_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif

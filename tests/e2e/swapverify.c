// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * swapverify: write patterned pages larger than the cgroup's memory, read
 * them all back and verify every byte. Built static for the test guest.
 *
 * Usage: swapverify MIB SEED [thp] [sync] [passes=N]
 * sync: after writing, run $VTMEM_STATS_CMD (if set), print
 * "VTMEM-SYNC written" and wait for one line on stdin before verifying.
 * Each page's content follows from its index and the seed: zero pages,
 * same-filled pages (one 64-bit value repeated), compressible pages (text
 * like) and random pages. Prints one line:
 *   VTMEM-RESULT ok|fail pages=N bad=N write_ms=N verify_ms=N
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define PAGE 4096

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static void fill(uint64_t *p, uint64_t idx, uint64_t seed)
{
	uint64_t h = mix(idx * 0x9e3779b97f4a7c15ULL ^ seed);
	unsigned int kind = h % 100, i;

	if (kind < 25) {			/* zero */
		memset(p, 0, PAGE);
	} else if (kind < 40) {			/* same-filled */
		uint64_t v = mix(h) | 1;

		if (kind < 30)
			v = ~0ULL;
		for (i = 0; i < PAGE / 8; i++)
			p[i] = v;
	} else if (kind < 70) {			/* compressible */
		char *c = (char *)p;

		for (i = 0; i < PAGE; i++)
			c[i] = 'a' + ((i / 16 + h) % 26);
		memcpy(c, &idx, sizeof(idx));
	} else {				/* random */
		uint64_t x = h;

		for (i = 0; i < PAGE / 8; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			p[i] = x;
		}
	}
}

static long ms_since(struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

int main(int argc, char **argv)
{
	uint64_t seed, npages, i, bad = 0;
	uint64_t expect[PAGE / 8];
	long write_ms, verify_ms = 0;
	struct timespec t0;
	int thp = 0, sync = 0, passes = 1, pass;
	char *mem;

	if (argc < 3) {
		fprintf(stderr, "usage: %s MIB SEED [thp] [passes=N]\n", argv[0]);
		return 2;
	}
	npages = strtoull(argv[1], NULL, 0) * (1 << 20) / PAGE;
	seed = strtoull(argv[2], NULL, 0);
	for (i = 3; i < (uint64_t)argc; i++) {
		if (!strcmp(argv[i], "thp"))
			thp = 1;
		else if (!strcmp(argv[i], "sync"))
			sync = 1;
		else if (!strncmp(argv[i], "passes=", 7))
			passes = atoi(argv[i] + 7);
	}
	mem = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	madvise(mem, npages * PAGE, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < npages; i++)
		fill((uint64_t *)(mem + i * PAGE), i, seed);
	write_ms = ms_since(&t0);
	printf("VTMEM-MARK written pages=%llu\n", (unsigned long long)npages);
	fflush(stdout);
	if (sync) {
		char line[256];

		if (getenv("VTMEM_STATS_CMD"))
			system(getenv("VTMEM_STATS_CMD"));
		printf("VTMEM-SYNC written\n");
		fflush(stdout);
		if (!fgets(line, sizeof(line), stdin))
			fprintf(stderr, "swapverify: no reply on stdin\n");
	}

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (pass = 0; pass < passes; pass++) {
		for (i = 0; i < npages; i++) {
			fill(expect, i, seed);
			if (memcmp(expect, mem + i * PAGE, PAGE)) {
				if (bad < 10)
					fprintf(stderr, "page %llu differs\n",
						(unsigned long long)i);
				bad++;
			}
		}
	}
	verify_ms = ms_since(&t0);
	printf("VTMEM-RESULT %s pages=%llu bad=%llu write_ms=%ld verify_ms=%ld\n",
	       bad ? "fail" : "ok", (unsigned long long)npages,
	       (unsigned long long)bad, write_ms, verify_ms);
	fflush(stdout);
	return bad ? 1 : 0;
}

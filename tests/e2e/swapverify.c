// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * swapverify: write patterned pages larger than the cgroup's memory, read
 * them all back and verify every byte. Built static for the test guest.
 *
 * Usage: swapverify MIB SEED [thp] [sync] [passes=N] [churn=R]
 * sync: after writing, run $VTMEM_STATS_CMD (if set), print
 * "VTMEM-SYNC written" and wait for one line on stdin before verifying.
 * churn=R: R rounds of: free a pseudo-random half of the pages
 * (MADV_DONTNEED: their swap slots are freed), verify every page (the
 * freed ones read as zeros; the others are swapped in), write new content
 * into the freed ones (swapped out again). Then free a random half once
 * more and, with sync, stop at "VTMEM-SYNC churned" (instead of
 * "written") before the final verify pass.
 * Each page's content follows from its index, the seed and the round it
 * was written in: zero pages, same-filled pages (one 64-bit value
 * repeated), compressible pages (text like) and random pages. Prints one
 * line:
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
		/*
		 * Text like: runs of 16 equal letters. Written a run at a
		 * time (two words), not a byte at a time: under TCG the fill
		 * is a good part of every pass.
		 */
		for (i = 0; i < PAGE / 16; i++) {
			uint64_t v = ('a' + (i + h) % 26) * 0x0101010101010101ULL;

			p[2 * i] = v;
			p[2 * i + 1] = v;
		}
		memcpy(p, &idx, sizeof(idx));
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

/* Page i's content in round gen (0: the first write). */
static uint64_t gen_seed(uint64_t seed, unsigned int gen)
{
	return gen ? mix(seed ^ (gen * 0x9e3779b97f4a7c15ULL)) : seed;
}

static void sync_point(const char *name)
{
	char line[256];

	if (getenv("VTMEM_STATS_CMD"))
		system(getenv("VTMEM_STATS_CMD"));
	printf("VTMEM-SYNC %s\n", name);
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		fprintf(stderr, "swapverify: no reply on stdin\n");
}

#define FREED 0xff	/* gen[i]: page i was dropped, reads as zeros */

/* Drop a pseudo-random half of the pages (round r's choice). */
static void free_half(char *mem, unsigned char *gen, uint64_t npages,
		      uint64_t seed, unsigned int r)
{
	uint64_t i;

	for (i = 0; i < npages; i++) {
		if (gen[i] == FREED || !(mix(i ^ gen_seed(seed, r + 100)) & 1))
			continue;
		madvise(mem + i * PAGE, PAGE, MADV_DONTNEED);
		gen[i] = FREED;
	}
}

/* Compare every page with what it must hold; returns the bad ones. */
static uint64_t verify(const char *mem, const unsigned char *gen,
		       uint64_t npages, uint64_t seed, uint64_t *expect)
{
	uint64_t i, bad = 0;

	for (i = 0; i < npages; i++) {
		if (gen[i] == FREED)
			memset(expect, 0, PAGE);
		else
			fill(expect, i, gen_seed(seed, gen[i]));
		if (memcmp(expect, mem + i * PAGE, PAGE)) {
			if (bad < 10)
				fprintf(stderr, "page %llu differs (round %d)\n",
					(unsigned long long)i, gen[i]);
			bad++;
		}
	}
	return bad;
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
	int thp = 0, sync = 0, passes = 1, pass, churn = 0, r;
	unsigned char *gen;
	char *mem;

	if (argc < 3) {
		fprintf(stderr, "usage: %s MIB SEED [thp] [sync] [passes=N] [churn=R]\n",
			argv[0]);
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
		else if (!strncmp(argv[i], "churn=", 6))
			churn = atoi(argv[i] + 6);
	}
	if (churn < 0 || churn > 100) {
		fprintf(stderr, "swapverify: churn=%d: 0 to 100 rounds\n", churn);
		return 2;
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
	if (churn) {
		gen = calloc(npages, 1);
		if (!gen) {
			perror("calloc");
			return 1;
		}
		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (r = 1; r <= churn; r++) {
			free_half(mem, gen, npages, seed, r);
			bad += verify(mem, gen, npages, seed, expect);
			for (i = 0; i < npages; i++) {
				if (gen[i] != FREED)
					continue;
				gen[i] = r;
				fill((uint64_t *)(mem + i * PAGE), i,
				     gen_seed(seed, r));
			}
			printf("VTMEM-MARK churn round %d\n", r);
			fflush(stdout);
		}
		free_half(mem, gen, npages, seed, churn + 1);
		if (sync)
			sync_point("churned");
		bad += verify(mem, gen, npages, seed, expect);
		free(gen);
	} else {
		if (sync)
			sync_point("written");
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
	}
	verify_ms = ms_since(&t0);
	printf("VTMEM-RESULT %s pages=%llu bad=%llu write_ms=%ld verify_ms=%ld\n",
	       bad ? "fail" : "ok", (unsigned long long)npages,
	       (unsigned long long)bad, write_ms, verify_ms);
	fflush(stdout);
	return bad ? 1 : 0;
}

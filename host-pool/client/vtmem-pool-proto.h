/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmem pool protocol: every constant of the conversation between the pool
 * daemon (vtmemd), the devices (through libvtmem-pool-client) and the
 * operator's CLI (vtmemctl). The messages themselves are documented in
 * docs/vtmemd.md.
 *
 * Framing: text lines of printable ASCII (0x20..0x7e) ended by '\n', at
 * most VTMEM_POOL_MAX_LINE bytes including the '\n'. Fields are separated
 * by exactly one space. Numbers are unsigned decimal without sign or
 * leading zeros, at most UINT64_MAX. A peer that breaks any rule is
 * disconnected.
 */
#ifndef VTMEM_POOL_PROTO_H
#define VTMEM_POOL_PROTO_H

/* Protocol version carried in REGISTER and WELCOME. */
#define VTMEM_POOL_PROTO_VERSION        1

/* Default socket path (systemd: RuntimeDirectory=vtmem). */
#define VTMEM_POOL_DEFAULT_SOCKET       "/run/vtmem/vtmemd.sock"
/* Environment variable that overrides the default path for vtmemctl. */
#define VTMEM_POOL_SOCKET_ENV           "VTMEM_POOL_SOCKET"

/* Longest line, '\n' included. */
#define VTMEM_POOL_MAX_LINE             1024
/* Longest VM name in REGISTER (bytes). */
#define VTMEM_POOL_MAX_NAME             255
/* Canonical UUID text: 8-4-4-4-12 hex digits. */
#define VTMEM_POOL_UUID_LEN             36

/* Budget is leased in granules of this many bytes. */
#define VTMEM_POOL_GRANULE              (4ULL << 20)
/*
 * Weights: 1 .. VTMEM_POOL_MAX_WEIGHT; a VM without a setting has the
 * default.
 */
#define VTMEM_POOL_DEFAULT_WEIGHT       100
#define VTMEM_POOL_MAX_WEIGHT           10000
/* Largest pool limit / VM limit the daemon accepts (1 EiB). */
#define VTMEM_POOL_MAX_BYTES            (1ULL << 60)
/* "no limit" in SET-VM-LIMIT and in status output */
#define VTMEM_POOL_NO_LIMIT_WORD        "none"

/*
 * After start, the daemon grants no increase for this long, so that the
 * devices that held leases from the previous daemon can re-register first
 * (must exceed the client's longest reconnect delay).
 */
#define VTMEM_POOL_DEFAULT_GRACE_MS     5000
/* Client reconnect delay: starts here, doubles, capped at the maximum. */
#define VTMEM_POOL_RECONNECT_MIN_MS     100
#define VTMEM_POOL_RECONNECT_MAX_MS     2000
/* A connection must send its first line within this time. */
#define VTMEM_POOL_HELLO_TIMEOUT_MS     10000
/* Unsent output the daemon keeps for a peer before disconnecting it. */
#define VTMEM_POOL_MAX_OUTBUF           (256 * 1024)

/*
 * Client hysteresis: ask for one granule of headroom above usage; give
 * back only when the grant exceeds that by this many granules.
 */
#define VTMEM_POOL_HEADROOM_GRANULES    1
#define VTMEM_POOL_RELEASE_GRANULES     2

/*
 * A device reports a grown refusal count (its demand signal) at most once
 * per this many ms when nothing else changed.
 */
#define VTMEM_POOL_REFUSAL_REPORT_MS    100

/* Device -> daemon */
/* REGISTER version uuid held limit cap wanted name */
#define VTMEM_POOL_MSG_REGISTER         "REGISTER"
/* held wanted cap [refusals stored-pages] */
#define VTMEM_POOL_MSG_UPDATE           "UPDATE"
#define VTMEM_POOL_MSG_ACK              "ACK"           /* seq held */
#define VTMEM_POOL_MSG_BYE              "BYE"           /* (no fields) */
/* Daemon -> device */
/* WELCOME version granule grace-ms */
#define VTMEM_POOL_MSG_WELCOME          "WELCOME"
#define VTMEM_POOL_MSG_LIMIT            "LIMIT"         /* seq bytes */
#define VTMEM_POOL_MSG_ERROR            "ERROR"         /* reason text */
/*
 * Control (vtmemctl) -> daemon; replies OK, a STATUS block (POOL, VM...,
 * END), or ERROR text and the connection closes. (vtmemctl also accepts
 * "ERR text" as an error reply; the daemon does not send it.)
 */
#define VTMEM_POOL_MSG_STATUS           "STATUS"
#define VTMEM_POOL_MSG_SET_POOL_LIMIT   "SET-POOL-LIMIT"    /* bytes */
#define VTMEM_POOL_MSG_SET_VM_LIMIT     "SET-VM-LIMIT"  /* uuid bytes|none */
#define VTMEM_POOL_MSG_SET_VM_WEIGHT    "SET-VM-WEIGHT" /* uuid weight */
/* Drop a VM's device connections and ghosts; OK, or ERROR if none. */
#define VTMEM_POOL_MSG_EVICT            "EVICT"         /* uuid */
#define VTMEM_POOL_MSG_OK               "OK"
#define VTMEM_POOL_MSG_ERR              "ERR"
#define VTMEM_POOL_MSG_POOL             "POOL"          /* key=value ... */
#define VTMEM_POOL_MSG_VM               "VM"    /* key=value ... name=rest */
#define VTMEM_POOL_MSG_END              "END"

/* vtmemctl exit codes */
#define VTMEMCTL_EXIT_OK                0
#define VTMEMCTL_EXIT_USAGE             1       /* bad arguments or sizes */
/* no such domain, or no device in it */
#define VTMEMCTL_EXIT_NOT_FOUND         2
#define VTMEMCTL_EXIT_DAEMON            3       /* vtmemd unreachable */
#define VTMEMCTL_EXIT_LIBVIRT           4       /* libvirt or QMP error */
#define VTMEMCTL_EXIT_REFUSED           5       /* vtmemd refused the request */

/* libvirt domain metadata */
#define VTMEM_METADATA_URI              "http://vtmem.org/xmlns/domain/1"
#define VTMEM_METADATA_PREFIX           "vtmem"
/* QOM type of the device and its conventional id */
#define VTMEM_QOM_TYPE                  "virtio-tmem-pci"
#define VTMEM_QOM_DEFAULT_ID            "vtmem0"

#endif /* VTMEM_POOL_PROTO_H */

/*
 * QTest testcase for virtio-tmem
 *
 * Copyright (c) 2026 The vtmem authors
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 */

#include "qemu/osdep.h"
#include <sys/prctl.h>
#include <sys/un.h>
#include <sys/wait.h>
#include "libqtest-single.h"
#include "qemu/bswap.h"
#include "qemu/module.h"
#include "qemu/units.h"
#define VTMEM_COMPAT_QTEST
#include "hw/virtio/vtmem-qemu-compat.h"
#include "standard-headers/linux/virtio_pci.h"
#include "standard-headers/linux/virtio_config.h"
#include "standard-headers/linux/virtio_ring.h"
#include "libqos/qgraph.h"
#include "libqos/virtio.h"
#include "libqos/virtio-pci.h"
#include "libqos/pci-pc.h"
#include "../../hw/virtio/vtmem/virtio_tmem.h"

#define TMEM_TIMEOUT_US (30 * 1000 * 1000)
#define PAGE            VIRTIO_TMEM_PAGE_SIZE
#define HDR             sizeof(struct virtio_tmem_req_hdr)
#define RESP            sizeof(struct virtio_tmem_resp)
#define TEST_SLOTS      1024
#define DEV_PATH        "/machine/peripheral/tmem0"
#define BACKEND_PATH    DEV_PATH "/virtio-backend"

/*
 * libqos graph nodes: virtio-tmem-pci produces the "virtio-tmem" interface,
 * "virtio-tmem-iothread" for the tests run with an IOThread and
 * "virtio-tmem-ioeventfd" for those run with ioeventfd=on (the graph
 * walk's stack holds 64 entries: one interface cannot carry them all)
 */
typedef struct QVirtioTmem {
    QVirtioDevice *vdev;
} QVirtioTmem;

typedef struct QVirtioTmemPCI {
    QVirtioPCIDevice pci_vdev;
    QVirtioTmem tmem;
} QVirtioTmemPCI;

static void *qvirtio_tmem_pci_get_driver(void *object, const char *interface)
{
    QVirtioTmemPCI *v = object;

    if (!g_strcmp0(interface, "pci-device")) {
        return v->pci_vdev.pdev;
    }
    if (!g_strcmp0(interface, "virtio-tmem") ||
        !g_strcmp0(interface, "virtio-tmem-iothread") ||
        !g_strcmp0(interface, "virtio-tmem-ioeventfd")) {
        return &v->tmem;
    }
    if (!g_strcmp0(interface, "virtio")) {
        return v->tmem.vdev;
    }
    fprintf(stderr, "%s not present in virtio-tmem-pci\n", interface);
    g_assert_not_reached();
}

static void *virtio_tmem_pci_create(void *pci_bus, QGuestAllocator *t_alloc,
                                    void *addr)
{
    QVirtioTmemPCI *v = g_new0(QVirtioTmemPCI, 1);
    QOSGraphObject *obj = &v->pci_vdev.obj;

    virtio_pci_init(&v->pci_vdev, pci_bus, addr);
    v->tmem.vdev = &v->pci_vdev.vdev;
    obj->get_driver = qvirtio_tmem_pci_get_driver;
    return obj;
}

static void virtio_tmem_register_nodes(void)
{
    QPCIAddress addr = {
        .devfn = QPCI_DEVFN(4, 0),
    };
    QOSGraphEdgeOptions opts = {
        .extra_device_opts = "addr=04.0,id=tmem0",
    };

    add_qpci_address(&opts, &addr);
    qos_node_create_driver("virtio-tmem-pci", virtio_tmem_pci_create);
    qos_node_consumes("virtio-tmem-pci", "pci-bus", &opts);
    qos_node_produces("virtio-tmem-pci", "pci-device");
    qos_node_produces("virtio-tmem-pci", "virtio");
    qos_node_produces("virtio-tmem-pci", "virtio-tmem");
    qos_node_produces("virtio-tmem-pci", "virtio-tmem-iothread");
    qos_node_produces("virtio-tmem-pci", "virtio-tmem-ioeventfd");
}

libqos_init(virtio_tmem_register_nodes);

/* A driver for the tests */
typedef struct Tm {
    QTestState *qts;
    QVirtioDevice *dev;
    QGuestAllocator *alloc;
    QVirtQueue *vq;
    uint64_t nr_slots;
} Tm;

typedef struct Req {
    uint64_t out_addr;      /* header + payload */
    uint64_t in_addr;       /* device-writable area, response at its end */
    uint32_t in_len;
    uint32_t head;
} Req;

/* Features and the queue, but no DRIVER_OK yet */
static void tm_setup(Tm *t, void *obj, QGuestAllocator *alloc)
{
    QVirtioTmem *tm = obj;
    uint64_t features;

    t->qts = global_qtest;
    t->dev = tm->vdev;
    t->alloc = alloc;
    g_assert_cmpint(t->dev->device_type, ==, VIRTIO_ID_TMEM);
    features = qvirtio_get_features(t->dev);
    g_assert_true(features & (1ull << VIRTIO_F_VERSION_1));
    g_assert_true(features & (1ull << VIRTIO_TMEM_F_SHRINK));
    features &= ~(QVIRTIO_F_BAD_FEATURE | (1ull << VIRTIO_RING_F_EVENT_IDX));
    qvirtio_set_features(t->dev, features);
    t->vq = qvirtqueue_setup(t->dev, alloc, VIRTIO_TMEM_VQ_REQ);
    t->nr_slots = qvirtio_config_readq(t->dev,
                      offsetof(struct virtio_tmem_config, nr_slots));
}

static void tm_start(Tm *t, void *obj, QGuestAllocator *alloc)
{
    tm_setup(t, obj, alloc);
    qvirtio_set_driver_ok(t->dev);
}

static QVirtioPCIDevice *tm_pci(Tm *t)
{
    return container_of(t->dev, QVirtioPCIDevice, vdev);
}

/* Guest-physical address of a field of the common configuration */
static uint64_t tm_common_addr(Tm *t, unsigned offset)
{
    QVirtioPCIDevice *p = tm_pci(t);

    g_assert_false(p->bar.is_io);
    return p->bar.addr + p->common_cfg_offset + offset;
}

static void tm_common_writew(Tm *t, unsigned offset, uint16_t value)
{
    qtest_writew(t->qts, tm_common_addr(t, offset), value);
}

static uint8_t tm_generation(Tm *t)
{
    return qtest_readb(t->qts,
                       tm_common_addr(t, VIRTIO_PCI_COMMON_CFGGENERATION));
}

/*
 * Reset the queue (Q_RESET) and set it up again with fresh descriptors
 * (libqos never reuses them), as a driver may while the device runs.
 */
static void tm_queue_reset(Tm *t)
{
    tm_common_writew(t, VIRTIO_PCI_COMMON_Q_SELECT, VIRTIO_TMEM_VQ_REQ);
    tm_common_writew(t, VIRTIO_PCI_COMMON_Q_RESET, 1);
    qvirtqueue_cleanup(t->dev->bus, t->vq, t->alloc);
    t->vq = qvirtqueue_setup(t->dev, t->alloc, VIRTIO_TMEM_VQ_REQ);
}

/* Requests the queue still has descriptors for (3 per request) */
static bool tm_room(Tm *t, int requests)
{
    return t->vq->free_head + 3 * requests <= t->vq->size;
}

static void tm_stop(Tm *t)
{
    qvirtqueue_cleanup(t->dev->bus, t->vq, t->alloc);
    /* Every test starts with a fresh QEMU (limits, broken devices). */
    qos_invalidate_command_line();
}

/* Reset the device and bring it up again (as a rebooting guest does). */
static void tm_restart(Tm *t)
{
    QVirtioTmem tm = { .vdev = t->dev };

    qvirtqueue_cleanup(t->dev->bus, t->vq, t->alloc);
    qvirtio_start_device(t->dev);
    tm_start(t, &tm, t->alloc);
}

/*
 * Queue a request without making it available. The header and the
 * payload go in separate descriptors, then the device-writable area
 * (in_len - RESP bytes, if any), then the response.
 */
static void req_add(Tm *t, Req *r, uint32_t type, uint64_t slot,
                    uint64_t count, const void *payload, size_t plen,
                    size_t in_len)
{
    struct virtio_tmem_req_hdr hdr = {
        .type = cpu_to_le32(type),
        .slot = cpu_to_le64(slot),
        .count = cpu_to_le64(count),
    };
    g_autofree uint8_t *fill = g_malloc(in_len);

    r->out_addr = guest_alloc(t->alloc, HDR + plen);
    qtest_memwrite(t->qts, r->out_addr, &hdr, HDR);
    if (plen) {
        qtest_memwrite(t->qts, r->out_addr + HDR, payload, plen);
    }
    r->in_len = in_len;
    r->in_addr = guest_alloc(t->alloc, in_len);
    memset(fill, 0xa5, in_len);
    qtest_memwrite(t->qts, r->in_addr, fill, in_len);

    r->head = qvirtqueue_add(t->qts, t->vq, r->out_addr, HDR, false, true);
    if (plen) {
        qvirtqueue_add(t->qts, t->vq, r->out_addr + HDR, plen, false, true);
    }
    if (in_len > RESP) {
        qvirtqueue_add(t->qts, t->vq, r->in_addr, in_len - RESP, true, true);
    }
    qvirtqueue_add(t->qts, t->vq, r->in_addr + in_len - RESP, RESP, true,
                   false);
}

/* Make n queued requests available at once, with one notification. */
static void publish(Tm *t, const uint32_t *heads, int n)
{
    uint16_t idx = qtest_readw(t->qts, t->vq->avail + 2);
    int i;

    for (i = 0; i < n; i++) {
        qtest_writew(t->qts,
                       t->vq->avail + 4 + 2 * ((idx + i) % t->vq->size),
                       heads[i]);
    }
    qtest_writew(t->qts, t->vq->avail + 2, idx + n);
    t->dev->bus->virtqueue_kick(t->dev, t->vq);
}

/* Wait until the request r is used (the next one in the used ring). */
static void req_wait(Tm *t, Req *r, bool first)
{
    uint32_t len = 0, head;

    if (first) {
        qvirtio_wait_used_elem(t->qts, t->dev, t->vq, r->head, &len,
                               TMEM_TIMEOUT_US);
    } else {
        g_assert_true(qvirtqueue_get_buf(t->qts, t->vq, &head, &len));
        g_assert_cmpuint(head, ==, r->head);
    }
    g_assert_cmpuint(len, ==, r->in_len);
}

static uint32_t req_status(Tm *t, Req *r)
{
    return qtest_readl(t->qts, r->in_addr + r->in_len - RESP);
}

static void req_free(Tm *t, Req *r)
{
    guest_free(t->alloc, r->out_addr);
    guest_free(t->alloc, r->in_addr);
}

/* Issue one request and wait for it; returns the status. */
static uint32_t tm_req(Tm *t, uint32_t type, uint64_t slot, uint64_t count,
                       const void *payload, size_t plen, size_t in_len,
                       void *in_data)
{
    Req r;
    uint32_t status;

    req_add(t, &r, type, slot, count, payload, plen, in_len);
    publish(t, &r.head, 1);
    req_wait(t, &r, true);
    status = req_status(t, &r);
    if (in_data) {
        qtest_memread(t->qts, r.in_addr, in_data, in_len - RESP);
    }
    if (status != VIRTIO_TMEM_S_OK && in_len > RESP) {
        /* Failed requests leave zeros, never stale data, before the status */
        g_autofree uint8_t *buf = g_malloc(in_len - RESP);
        g_autofree uint8_t *zero = g_malloc0(in_len - RESP);

        qtest_memread(t->qts, r.in_addr, buf, in_len - RESP);
        g_assert_cmpmem(buf, in_len - RESP, zero, in_len - RESP);
    }
    req_free(t, &r);
    return status;
}

static uint32_t tm_put(Tm *t, uint64_t slot, const void *page)
{
    return tm_req(t, VIRTIO_TMEM_T_PUT, slot, 0, page, PAGE, RESP, NULL);
}

static uint32_t tm_get(Tm *t, uint64_t slot, void *page)
{
    return tm_req(t, VIRTIO_TMEM_T_GET, slot, 0, NULL, 0, PAGE + RESP, page);
}

static uint32_t tm_simple(Tm *t, uint32_t type, uint64_t slot, uint64_t count)
{
    return tm_req(t, type, slot, count, NULL, 0, RESP, NULL);
}

static uint32_t tm_batch(Tm *t, const uint64_t *slots, uint64_t count,
                         size_t n)
{
    g_autofree uint64_t *le = g_new0(uint64_t, n + 1);
    size_t i;

    for (i = 0; i < n; i++) {
        le[i] = cpu_to_le64(slots[i]);
    }
    return tm_req(t, VIRTIO_TMEM_T_INVALIDATE_BATCH, 0, count, le,
                  n * sizeof(uint64_t), RESP, NULL);
}

static void assert_slot(Tm *t, uint64_t slot, const uint8_t *page)
{
    g_autofree uint8_t *buf = g_malloc(PAGE + RESP);

    if (page) {
        g_assert_cmpuint(tm_get(t, slot, buf), ==, VIRTIO_TMEM_S_OK);
        g_assert_cmpmem(buf, PAGE, page, PAGE);
    } else {
        g_assert_cmpuint(tm_get(t, slot, buf), ==, VIRTIO_TMEM_S_NOENT);
    }
}

/* Page contents: 0 zero, 1 same-filled, 2 text, 3+ random (seeded by kind) */
static uint8_t *make_page(int kind)
{
    uint8_t *p = g_malloc0(PAGE);
    GRand *r;
    size_t i;

    switch (kind) {
    case 0:
        break;
    case 1:
        for (i = 0; i < PAGE; i += 8) {
            stq_le_p(p + i, 0x0123456789abcdefULL);
        }
        break;
    case 2:
        for (i = 0; i < PAGE; i++) {
            p[i] = "The quick brown fox jumps over the lazy dog. "[i % 45];
        }
        break;
    default:
        r = g_rand_new_with_seed(kind);
        for (i = 0; i < PAGE; i += 4) {
            stl_le_p(p + i, g_rand_int(r));
        }
        g_rand_free(r);
        break;
    }
    return p;
}

/* Half random, half zeros: compresses to about half a page */
static uint8_t *make_half_page(int seed)
{
    uint8_t *p = make_page(seed);

    memset(p + PAGE / 2, 0, PAGE / 2);
    return p;
}

/* qom-get: the reply (for qobject_unref) and, in *value, what it returned. */
static QDict *qom_get(Tm *t, const char *path, const char *prop,
                      QObject **value)
{
    QDict *resp = qtest_qmp(t->qts, "{'execute': 'qom-get', 'arguments':"
                            " {'path': %s, 'property': %s}}", path, prop);

    g_assert(qdict_haskey(resp, "return"));
    *value = qdict_get(resp, "return");
    return resp;
}

static uint64_t qom_get_u64(Tm *t, const char *path, const char *prop)
{
    QObject *ret;
    QDict *resp = qom_get(t, path, prop, &ret);
    QNum *num = qobject_to(QNum, ret);
    uint64_t value;

    g_assert(num);
    g_assert_true(qnum_get_try_uint(num, &value));
    qobject_unref(resp);
    return value;
}

static void qom_set_u64(Tm *t, const char *path, const char *prop,
                        uint64_t value)
{
    QDict *resp = qtest_qmp(t->qts, "{'execute': 'qom-set', 'arguments':"
                            " {'path': %s, 'property': %s, 'value': %"
                            PRIu64 "}}", path, prop, value);

    g_assert(qdict_haskey(resp, "return"));
    qobject_unref(resp);
}

static uint64_t tm_stat(Tm *t, const char *name)
{
    return qom_get_u64(t, BACKEND_PATH, name);
}

/* QEMU is alive and answers QMP. */
static void assert_alive(Tm *t)
{
    QDict *resp = qtest_qmp(t->qts, "{'execute': 'query-status'}");

    g_assert(qdict_haskey(resp, "return"));
    qobject_unref(resp);
    g_assert_cmpuint(tm_stat(t, "puts"), <, UINT64_MAX);
}

static bool device_broken(Tm *t)
{
    gint64 start = g_get_monotonic_time();

    /* virtio_error() sets NEEDS_RESET; give the main loop time to run */
    do {
        qtest_clock_step(t->qts, 100);
        if (t->dev->bus->get_status(t->dev) & VIRTIO_CONFIG_S_NEEDS_RESET) {
            return true;
        }
    } while (g_get_monotonic_time() - start < 2 * 1000 * 1000);
    return false;
}

static bool qom_get_bool(Tm *t, const char *path, const char *prop)
{
    QObject *ret;
    QDict *resp = qom_get(t, path, prop, &ret);
    QBool *b = qobject_to(QBool, ret);
    bool value;

    g_assert(b);
    value = qbool_get_bool(b);
    qobject_unref(resp);
    return value;
}

typedef enum {
    POOL_NONE,              /* standalone (no "pool" property) */
    POOL_UNREACHABLE,       /* "pool" names a socket nobody listens on */
    POOL_DAEMON,            /* a real vtmemd ($VTMEM_QTEST_VTMEMD) */
    POOL_LATE,              /* the same, started by the test after QEMU */
} PoolKind;

typedef struct TestArg {
    const char *limit;      /* -global virtio-tmem-device.limit, or NULL */
    const char *slots;      /* -global virtio-tmem-device.slots, or NULL */
    int kind;               /* for test_bad_broken; PoolKind for pool tests */
    bool iothread;          /* serve the queue in an IOThread */
    bool ioeventfd;         /* ioeventfd=on: kicks served by the main loop */
    bool pool;              /* a pool test: kind is a PoolKind */
    bool snapshot;          /* a qcow2 disk for savevm/loadvm */
} TestArg;

/*
 * The vtmemd of a pool test: started by the before hook (the socket path
 * goes on QEMU's command line), killed by the test or, if the test
 * aborts, by the kernel when qos-test exits (PR_SET_PDEATHSIG).
 */
#define POOL_UUID       "6f1c2a47-1d6e-4f0e-9d0e-3f5b7d1a9e01"
#define POOL_LIMIT      (4 * MiB)
static struct {
    char *dir;
    char *sock;
    GPid pid;
} vtmemd;

static void vtmemd_child_setup(gpointer data)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
}

static void vtmemd_start(void)
{
    const char *bin = getenv("VTMEM_QTEST_VTMEMD");
    g_autofree char *limit = g_strdup_printf("%llu",
                                             (unsigned long long)POOL_LIMIT);
    char *argv[] = { (char *)bin, (char *)"--socket", vtmemd.sock,
                     (char *)"--pool-limit", limit, (char *)"--grace-ms",
                     (char *)"0", NULL };
    GError *err = NULL;
    int i;

    g_assert_true(g_spawn_async(NULL, argv, NULL,
                                G_SPAWN_DO_NOT_REAP_CHILD |
                                G_SPAWN_STDOUT_TO_DEV_NULL,
                                vtmemd_child_setup, NULL, &vtmemd.pid, &err));
    for (i = 0; i < 500 && !g_file_test(vtmemd.sock, G_FILE_TEST_EXISTS);
         i++) {
        g_usleep(10 * 1000);
    }
    g_assert_true(g_file_test(vtmemd.sock, G_FILE_TEST_EXISTS));
}

static void vtmemd_stop(void)
{
    int status;

    if (vtmemd.pid) {
        kill(vtmemd.pid, SIGTERM);
        waitpid(vtmemd.pid, &status, 0);
        g_spawn_close_pid(vtmemd.pid);
        vtmemd.pid = 0;
    }
}

/* vtmemd's STATUS reply (the test runs as the daemon's uid). */
static char *vtmemd_status(void)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    GString *s = g_string_new(NULL);
    char buf[1024];
    ssize_t n;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    g_assert_cmpint(fd, >=, 0);
    g_strlcpy(sa.sun_path, vtmemd.sock, sizeof(sa.sun_path));
    g_assert_cmpint(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    g_assert_cmpint(write(fd, "STATUS\n", 7), ==, 7);
    while (!strstr(s->str, "END\n") && (n = read(fd, buf, sizeof(buf))) > 0) {
        g_string_append_len(s, buf, n);
    }
    close(fd);
    return g_string_free(s, false);
}

/* Wait until vtmemd's STATUS contains text; false after 10 s. */
static bool vtmemd_wait_status(const char *text)
{
    int i;

    for (i = 0; i < 1000; i++) {
        g_autofree char *st = vtmemd_status();

        if (strstr(st, text)) {
            return true;
        }
        g_usleep(10 * 1000);
    }
    return false;
}

static void vtmemd_cleanup(void)
{
    vtmemd_stop();
    if (vtmemd.dir) {
        unlink(vtmemd.sock);
        rmdir(vtmemd.dir);
    }
    g_free(vtmemd.sock);
    g_free(vtmemd.dir);
    vtmemd.sock = vtmemd.dir = NULL;
}

static void pool_before(GString *cmd_line, TestArg *ta)
{
    switch (ta->kind) {
    case POOL_NONE:
        break;
    case POOL_UNREACHABLE:
        g_string_append(cmd_line, " -global virtio-tmem-device.pool="
                        "/nonexistent-vtmem-dir/vtmemd.sock ");
        break;
    case POOL_DAEMON:
    case POOL_LATE:
        if (!getenv("VTMEM_QTEST_VTMEMD")) {
            break;          /* the test skips */
        }
        vtmemd_cleanup();
        vtmemd.dir = g_dir_make_tmp("vtmem-qtest-XXXXXX", NULL);
        g_assert_nonnull(vtmemd.dir);
        vtmemd.sock = g_build_filename(vtmemd.dir, "vtmemd.sock", NULL);
        if (ta->kind == POOL_DAEMON) {
            vtmemd_start();
        }
        g_string_append_printf(cmd_line, " -name qtest-vtmem -uuid %s"
                               " -global virtio-tmem-device.pool=%s ",
                               POOL_UUID, vtmemd.sock);
        break;
    }
}

/*
 * The disk of the snapshot test (savevm keeps the VM state in a qcow2
 * image): made by the before hook with qemu-img (Debian's qemu-utils).
 */
static char *snapshot_disk;

static void snapshot_before(GString *cmd_line)
{
    g_autofree char *dir = g_dir_make_tmp("vtmem-snap-XXXXXX", NULL);
    char *argv[] = { (char *)"qemu-img", (char *)"create", (char *)"-q",
                     (char *)"-f", (char *)"qcow2", NULL, (char *)"64M",
                     NULL };
    int status;

    g_assert_nonnull(dir);
    g_free(snapshot_disk);
    snapshot_disk = g_build_filename(dir, "disk.qcow2", NULL);
    argv[5] = snapshot_disk;
    g_assert_true(g_spawn_sync(NULL, argv, NULL, G_SPAWN_SEARCH_PATH, NULL,
                               NULL, NULL, NULL, &status, NULL));
    g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    g_string_append_printf(cmd_line, " -drive file=%s,format=qcow2,if=none,"
                           "id=snapdisk ", snapshot_disk);
}

static void *tmem_before(GString *cmd_line, void *arg)
{
    TestArg *ta = arg;

    if (ta && ta->pool) {
        pool_before(cmd_line, ta);
    }
    if (ta && ta->snapshot) {
        snapshot_before(cmd_line);
    }

    if (ta && ta->slots) {
        g_string_append_printf(cmd_line,
                               " -global virtio-tmem-device.slots=%s ",
                               ta->slots);
    } else {
        g_string_append_printf(cmd_line,
                               " -global virtio-tmem-device.slots=%d ",
                               TEST_SLOTS);
    }
    if (ta && ta->limit) {
        g_string_append_printf(cmd_line,
                               " -global virtio-tmem-device.limit=%s ",
                               ta->limit);
    }
    if (ta && ta->iothread) {
        g_string_append(cmd_line, " -object iothread,id=tmemio"
                        " -global virtio-tmem-device.iothread=tmemio ");
    }
    /*
     * Without KVM or an IOThread, ioeventfd defaults to off (kicks served
     * in the vCPU thread); on, as with KVM, the main loop serves them.
     */
    if (ta && ta->ioeventfd) {
        g_string_append(cmd_line, " -global virtio-tmem-pci.ioeventfd=on ");
    }
    return arg;
}

/* Tests */

static void test_config(void *obj, void *data, QGuestAllocator *alloc)
{
    Tm t;

    tm_start(&t, obj, alloc);
#define CFG(f) offsetof(struct virtio_tmem_config, f)
    g_assert_cmpuint(qvirtio_config_readl(t.dev, CFG(page_size)), ==, PAGE);
    g_assert_cmpuint(qvirtio_config_readl(t.dev, CFG(max_batch)), ==,
                     VIRTIO_TMEM_MAX_BATCH);
    g_assert_cmpuint(t.nr_slots, ==, TEST_SLOTS);
    g_assert_cmpuint(qvirtio_config_readq(t.dev, CFG(limit)), ==, 256 * MiB);
    g_assert_cmpuint(qvirtio_config_readq(t.dev, CFG(shrink_target)), ==,
                     256 * MiB);
    g_assert_cmpuint(qvirtio_config_readq(t.dev, CFG(usage)), ==,
                     tm_stat(&t, "memory-held"));
    g_assert_cmpuint(qom_get_u64(&t, DEV_PATH, "limit"), ==, 256 * MiB);
    g_assert_cmpuint(tm_stat(&t, "stored-pages"), ==, 0);
    tm_stop(&t);
}

static void test_put_get(void *obj, void *data, QGuestAllocator *alloc)
{
    uint64_t slots[] = { 0, 1, 2, 3, 4, 5, TEST_SLOTS - 1 };
    uint8_t *pages[G_N_ELEMENTS(slots)];
    g_autofree uint8_t *newer = make_page(77);
    Tm t;
    size_t i;

    tm_start(&t, obj, alloc);
    for (i = 0; i < G_N_ELEMENTS(slots); i++) {
        pages[i] = make_page(i);
        g_assert_cmpuint(tm_put(&t, slots[i], pages[i]), ==,
                         VIRTIO_TMEM_S_OK);
    }
    for (i = 0; i < G_N_ELEMENTS(slots); i++) {
        assert_slot(&t, slots[i], pages[i]);
    }
    g_assert_cmpuint(tm_stat(&t, "stored-pages"), ==, G_N_ELEMENTS(slots));
    g_assert_cmpuint(tm_stat(&t, "puts"), ==, G_N_ELEMENTS(slots));
    g_assert_cmpuint(tm_stat(&t, "gets"), ==, G_N_ELEMENTS(slots));
    g_assert_cmpuint(tm_stat(&t, "memory-held"), >, 0);
    g_assert_cmpuint(qvirtio_config_readq(t.dev,
                         offsetof(struct virtio_tmem_config, usage)), ==,
                     tm_stat(&t, "memory-held"));

    /* put, put, get: the latest put wins */
    g_assert_cmpuint(tm_put(&t, 2, newer), ==, VIRTIO_TMEM_S_OK);
    assert_slot(&t, 2, newer);
    /* a get does not consume the page */
    assert_slot(&t, 2, newer);
    /* empty slots */
    assert_slot(&t, 6, NULL);
    assert_slot(&t, TEST_SLOTS - 2, NULL);
    for (i = 0; i < G_N_ELEMENTS(slots); i++) {
        g_free(pages[i]);
    }
    tm_stop(&t);
}

static void test_invalidate(void *obj, void *data, QGuestAllocator *alloc)
{
    g_autofree uint8_t *a = make_page(3);
    g_autofree uint8_t *b = make_page(2);
    Tm t;

    tm_start(&t, obj, alloc);
    g_assert_cmpuint(tm_put(&t, 10, a), ==, VIRTIO_TMEM_S_OK);
    g_assert_cmpuint(tm_put(&t, 11, b), ==, VIRTIO_TMEM_S_OK);
    g_assert_cmpuint(tm_simple(&t, VIRTIO_TMEM_T_INVALIDATE, 10, 0), ==,
                     VIRTIO_TMEM_S_OK);
    assert_slot(&t, 10, NULL);
    assert_slot(&t, 11, b);
    /* an empty slot: still OK */
    g_assert_cmpuint(tm_simple(&t, VIRTIO_TMEM_T_INVALIDATE, 10, 0), ==,
                     VIRTIO_TMEM_S_OK);
    g_assert_cmpuint(tm_stat(&t, "invalidations"), >=, 1);
    g_assert_cmpuint(tm_stat(&t, "stored-pages"), ==, 1);
    tm_stop(&t);
}

static void put_range(Tm *t, uint64_t first, uint64_t n, uint8_t **pages)
{
    uint64_t i;

    for (i = 0; i < n; i++) {
        pages[i] = make_page(first + i);
        g_assert_cmpuint(tm_put(t, first + i, pages[i]), ==,
                         VIRTIO_TMEM_S_OK);
    }
}

static void free_pages(uint8_t **pages, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        g_free(pages[i]);
    }
}

static void test_invalidate_range(void *obj, void *data,
                                  QGuestAllocator *alloc)
{
    uint8_t *pages[10];
    g_autofree uint8_t *last = make_page(5);
    Tm t;
    int i;

    tm_start(&t, obj, alloc);
    put_range(&t, 0, 10, pages);
    g_assert_cmpuint(tm_put(&t, TEST_SLOTS - 1, last), ==, VIRTIO_TMEM_S_OK);
    g_assert_cmpuint(tm_simple(&t, VIRTIO_TMEM_T_INVALIDATE_RANGE, 2, 3), ==,
                     VIRTIO_TMEM_S_OK);
    for (i = 0; i < 10; i++) {
        assert_slot(&t, i, i >= 2 && i < 5 ? NULL : pages[i]);
    }
    /* empty range, and a range up to the last slot */
    g_assert_cmpuint(tm_simple(&t, VIRTIO_TMEM_T_INVALIDATE_RANGE, 7, 0), ==,
                     VIRTIO_TMEM_S_OK);
    assert_slot(&t, 7, pages[7]);
    g_assert_cmpuint(tm_simple(&t, VIRTIO_TMEM_T_INVALIDATE_RANGE, 9,
                               TEST_SLOTS - 9), ==, VIRTIO_TMEM_S_OK);
    assert_slot(&t, 9, NULL);
    assert_slot(&t, TEST_SLOTS - 1, NULL);
    assert_slot(&t, 8, pages[8]);
    g_assert_cmpuint(tm_stat(&t, "stored-pages"), ==, 6);
    free_pages(pages, 10);
    tm_stop(&t);
}

static void test_invalidate_all(void *obj, void *data, QGuestAllocator *alloc)
{
    uint8_t *pages[8];
    Tm t;
    int i;

    tm_start(&t, obj, alloc);
    put_range(&t, 100, 8, pages);
    g_assert_cmpuint(tm_simple(&t, VIRTIO_TMEM_T_INVALIDATE_ALL, 0, 0), ==,
                     VIRTIO_TMEM_S_OK);
    for (i = 0; i < 8; i++) {
        assert_slot(&t, 100 + i, NULL);
    }
    g_assert_cmpuint(tm_stat(&t, "stored-pages"), ==, 0);
    /* the device works on afterwards */
    g_assert_cmpuint(tm_put(&t, 100, pages[3]), ==, VIRTIO_TMEM_S_OK);
    assert_slot(&t, 100, pages[3]);
    free_pages(pages, 8);
    tm_stop(&t);
}

static void test_invalidate_batch(void *obj, void *data,
                                  QGuestAllocator *alloc)
{
    uint64_t drop[] = { 1, 3, 5, 7, 3, 500 };   /* 3 twice, 500 empty */
    g_autofree uint64_t *big = g_new(uint64_t, VIRTIO_TMEM_MAX_BATCH);
    uint8_t *pages[10];
    Tm t;
    int i;

    tm_start(&t, obj, alloc);
    put_range(&t, 0, 10, pages);
    g_assert_cmpuint(tm_batch(&t, drop, G_N_ELEMENTS(drop),
                              G_N_ELEMENTS(drop)), ==, VIRTIO_TMEM_S_OK);
    for (i = 0; i < 10; i++) {
        assert_slot(&t, i, (i & 1) && i < 8 ? NULL : pages[i]);
    }
    /* an empty batch */
    g_assert_cmpuint(tm_batch(&t, drop, 0, 0), ==, VIRTIO_TMEM_S_OK);
    /* the largest batch */
    for (i = 0; i < VIRTIO_TMEM_MAX_BATCH; i++) {
        big[i] = TEST_SLOTS - 1 - i;
    }
    big[0] = 8;
    g_assert_cmpuint(tm_batch(&t, big, VIRTIO_TMEM_MAX_BATCH,
                              VIRTIO_TMEM_MAX_BATCH), ==, VIRTIO_TMEM_S_OK);
    assert_slot(&t, 8, NULL);
    assert_slot(&t, 9, pages[9]);
    g_assert_cmpuint(tm_stat(&t, "stored-pages"), ==, 5);
    free_pages(pages, 10);
    tm_stop(&t);
}

/*
 * Several requests made available with one notification complete in
 * order: an INVALIDATE never overtakes a later PUT of the same slot.
 */
static void test_batching_order(void *obj, void *data, QGuestAllocator *alloc)
{
    g_autofree uint8_t *a = make_page(3);
    g_autofree uint8_t *b = make_page(4);
    g_autofree uint8_t *buf = g_malloc(PAGE);
    Req r[8];
    uint32_t heads[8];
    uint32_t expect[8] = {
        VIRTIO_TMEM_S_OK, VIRTIO_TMEM_S_OK, VIRTIO_TMEM_S_OK,
        VIRTIO_TMEM_S_OK, VIRTIO_TMEM_S_OK, VIRTIO_TMEM_S_OK,
        VIRTIO_TMEM_S_NOENT, VIRTIO_TMEM_S_OK,
    };
    Tm t;
    int i;

    tm_start(&t, obj, alloc);
    req_add(&t, &r[0], VIRTIO_TMEM_T_PUT, 7, 0, a, PAGE, RESP);
    req_add(&t, &r[1], VIRTIO_TMEM_T_INVALIDATE, 7, 0, NULL, 0, RESP);
    req_add(&t, &r[2], VIRTIO_TMEM_T_PUT, 7, 0, b, PAGE, RESP);
    req_add(&t, &r[3], VIRTIO_TMEM_T_GET, 7, 0, NULL, 0, PAGE + RESP);
    req_add(&t, &r[4], VIRTIO_TMEM_T_PUT, 8, 0, a, PAGE, RESP);
    req_add(&t, &r[5], VIRTIO_TMEM_T_INVALIDATE_RANGE, 8, 1, NULL, 0, RESP);
    req_add(&t, &r[6], VIRTIO_TMEM_T_GET, 8, 0, NULL, 0, PAGE + RESP);
    req_add(&t, &r[7], VIRTIO_TMEM_T_PUT, 8, 0, a, PAGE, RESP);
    for (i = 0; i < 8; i++) {
        heads[i] = r[i].head;
    }
    publish(&t, heads, 8);
    for (i = 0; i < 8; i++) {
        req_wait(&t, &r[i], i == 0);
        g_assert_cmpuint(req_status(&t, &r[i]), ==, expect[i]);
    }
    qtest_memread(t.qts, r[3].in_addr, buf, PAGE);
    g_assert_cmpmem(buf, PAGE, b, PAGE);
    for (i = 0; i < 8; i++) {
        req_free(&t, &r[i]);
    }
    assert_slot(&t, 7, b);
    assert_slot(&t, 8, a);
    tm_stop(&t);
}

/* Descriptor framing does not matter, only the byte streams. */
static void test_framing(void *obj, void *data, QGuestAllocator *alloc)
{
    g_autofree uint8_t *a = make_page(9);
    g_autofree uint8_t *buf = g_malloc(PAGE);
    struct virtio_tmem_req_hdr hdr = {
        .type = cpu_to_le32(VIRTIO_TMEM_T_PUT),
        .slot = cpu_to_le64(42),
    };
    uint64_t out, in;
    uint32_t head;
    Tm t;

    tm_start(&t, obj, alloc);
    /* PUT: header and page in one descriptor, the response alone */
    out = guest_alloc(alloc, HDR + PAGE);
    in = guest_alloc(alloc, PAGE + RESP);
    qtest_memwrite(t.qts, out, &hdr, HDR);
    qtest_memwrite(t.qts, out + HDR, a, PAGE);
    head = qvirtqueue_add(t.qts, t.vq, out, HDR + PAGE, false, true);
    qvirtqueue_add(t.qts, t.vq, in, RESP, true, false);
    publish(&t, &head, 1);
    qvirtio_wait_used_elem(t.qts, t.dev, t.vq, head, NULL, TMEM_TIMEOUT_US);
    g_assert_cmpuint(qtest_readl(t.qts, in), ==, VIRTIO_TMEM_S_OK);

    /* PUT: header split 10 + 14, page split 1 + 4000 + 95 */
    hdr.slot = cpu_to_le64(43);
    qtest_memwrite(t.qts, out, &hdr, HDR);
    head = qvirtqueue_add(t.qts, t.vq, out, 10, false, true);
    qvirtqueue_add(t.qts, t.vq, out + 10, 14, false, true);
    qvirtqueue_add(t.qts, t.vq, out + HDR, 1, false, true);
    qvirtqueue_add(t.qts, t.vq, out + HDR + 1, 4000, false, true);
    qvirtqueue_add(t.qts, t.vq, out + HDR + 4001, 95, false, true);
    qvirtqueue_add(t.qts, t.vq, in, RESP, true, false);
    publish(&t, &head, 1);
    qvirtio_wait_used_elem(t.qts, t.dev, t.vq, head, NULL, TMEM_TIMEOUT_US);
    g_assert_cmpuint(qtest_readl(t.qts, in), ==, VIRTIO_TMEM_S_OK);

    /* GET: page and response in one descriptor */
    hdr.type = cpu_to_le32(VIRTIO_TMEM_T_GET);
    qtest_memwrite(t.qts, out, &hdr, HDR);
    head = qvirtqueue_add(t.qts, t.vq, out, HDR, false, true);
    qvirtqueue_add(t.qts, t.vq, in, PAGE + RESP, true, false);
    publish(&t, &head, 1);
    qvirtio_wait_used_elem(t.qts, t.dev, t.vq, head, NULL, TMEM_TIMEOUT_US);
    g_assert_cmpuint(qtest_readl(t.qts, in + PAGE), ==, VIRTIO_TMEM_S_OK);
    qtest_memread(t.qts, in, buf, PAGE);
    g_assert_cmpmem(buf, PAGE, a, PAGE);

    /* GET: page split 2048 + 2050, the response across the last two */
    hdr.slot = cpu_to_le64(42);
    qtest_memwrite(t.qts, out, &hdr, HDR);
    head = qvirtqueue_add(t.qts, t.vq, out, HDR, false, true);
    qvirtqueue_add(t.qts, t.vq, in, 2048, true, true);
    qvirtqueue_add(t.qts, t.vq, in + 2048, 2050, true, true);
    qvirtqueue_add(t.qts, t.vq, in + 4098, 2, true, false);
    publish(&t, &head, 1);
    qvirtio_wait_used_elem(t.qts, t.dev, t.vq, head, NULL, TMEM_TIMEOUT_US);
    g_assert_cmpuint(qtest_readl(t.qts, in + PAGE), ==, VIRTIO_TMEM_S_OK);
    qtest_memread(t.qts, in, buf, PAGE);
    g_assert_cmpmem(buf, PAGE, a, PAGE);

    guest_free(alloc, out);
    guest_free(alloc, in);
    tm_stop(&t);
}

/* With a small limit (64 KiB from tmem_before): refusals */
static void test_limit(void *obj, void *data, QGuestAllocator *alloc)
{
    uint8_t *pages[64];
    g_autofree uint8_t *buf = g_malloc(PAGE);
    int i, n = 0;
    uint32_t st = VIRTIO_TMEM_S_OK;
    Tm t;

    tm_start(&t, obj, alloc);
    g_assert_cmpuint(qvirtio_config_readq(t.dev,
                         offsetof(struct virtio_tmem_config, limit)), ==,
                     128 * KiB);
    /*
     * Incompressible pages until the device refuses one. 128K: the store's
     * own metadata (slot table, zspage directory segments of 16 KiB) takes
     * about 60 KiB once the first page is in; more pages would run out of
     * libqos descriptors (it never reuses them) within the test.
     */
    for (i = 0; i < 64 && st == VIRTIO_TMEM_S_OK; i++) {
        pages[i] = make_page(1000 + i);
        st = tm_put(&t, i, pages[i]);
        n = i + 1;
    }
    g_assert_cmpuint(st, ==, VIRTIO_TMEM_S_NOSPACE);
    g_assert_cmpuint(n, >, 1);
    g_assert_cmpuint(tm_stat(&t, "refusals"), ==, 1);
    g_assert_cmpuint(tm_stat(&t, "memory-held"), <=, 128 * KiB);
    /* the refused slot holds nothing, the others are intact */
    assert_slot(&t, n - 1, NULL);
    for (i = 0; i < n - 1; i++) {
        assert_slot(&t, i, pages[i]);
    }
    /* a refused PUT over an older copy leaves no copy at all */
    qom_set_u64(&t, BACKEND_PATH, "limit", 0);
    g_assert_cmpuint(tm_put(&t, 0, pages[1]), ==, VIRTIO_TMEM_S_NOSPACE);
    assert_slot(&t, 0, NULL);
    /* a limit below usage drops nothing */
    assert_slot(&t, 1, pages[1]);
    g_assert_cmpuint(tm_stat(&t, "refusals"), ==, 2);
    free_pages(pages, n);
    tm_stop(&t);
}

/* Changing the limit at run time: qom-set on the proxy and the backend */
static void test_runtime_limit(void *obj, void *data, QGuestAllocator *alloc)
{
    g_autofree uint8_t *a = make_page(11);
    uint64_t usage;
    Tm t;

    tm_start(&t, obj, alloc);
    g_assert_cmpuint(tm_put(&t, 1, a), ==, VIRTIO_TMEM_S_OK);
    usage = tm_stat(&t, "memory-held");
    g_assert_cmpuint(usage, >, 0);
    g_assert_cmpuint(qom_get_u64(&t, DEV_PATH, "memory-held"), ==, usage);
    g_assert_cmpuint(qom_get_u64(&t, DEV_PATH, "stored-pages"), ==, 1);

    /* below usage: puts refused, nothing dropped, config updated */
    qom_set_u64(&t, DEV_PATH, "limit", usage / 2);
    qvirtio_wait_config_isr(t.dev, TMEM_TIMEOUT_US);
    g_assert_cmpuint(qom_get_u64(&t, BACKEND_PATH, "limit"), ==, usage / 2);
    g_assert_cmpuint(qvirtio_config_readq(t.dev,
                         offsetof(struct virtio_tmem_config, limit)), ==,
                     usage / 2);
    g_assert_cmpuint(qvirtio_config_readq(t.dev,
                         offsetof(struct virtio_tmem_config, shrink_target)),
                     ==, usage / 2);
    g_assert_cmpuint(tm_put(&t, 2, a), ==, VIRTIO_TMEM_S_NOSPACE);
    assert_slot(&t, 1, a);
    assert_slot(&t, 2, NULL);

    /* raised again through the backend path */
    qom_set_u64(&t, BACKEND_PATH, "limit", 128 * MiB);
    qvirtio_wait_config_isr(t.dev, TMEM_TIMEOUT_US);
    g_assert_cmpuint(qom_get_u64(&t, DEV_PATH, "limit"), ==, 128 * MiB);
    g_assert_cmpuint(qvirtio_config_readq(t.dev,
                         offsetof(struct virtio_tmem_config, limit)), ==,
                     128 * MiB);
    g_assert_cmpuint(tm_put(&t, 2, a), ==, VIRTIO_TMEM_S_OK);
    assert_slot(&t, 2, a);
    g_assert_cmpuint(tm_stat(&t, "refusals"), ==, 1);
    g_assert_cmpuint(tm_stat(&t, "puts"), ==, 2);
    tm_stop(&t);
}

static void test_reset(void *obj, void *data, QGuestAllocator *alloc)
{
    uint8_t *pages[4];
    Tm t;
    int i;

    tm_start(&t, obj, alloc);
    put_range(&t, 0, 4, pages);
    g_assert_cmpuint(tm_stat(&t, "stored-pages"), ==, 4);
    tm_restart(&t);
    g_assert_cmpuint(tm_stat(&t, "stored-pages"), ==, 0);
    g_assert_cmpuint(qvirtio_config_readq(t.dev,
                         offsetof(struct virtio_tmem_config, usage)), ==,
                     tm_stat(&t, "memory-held"));
    for (i = 0; i < 4; i++) {
        assert_slot(&t, i, NULL);
    }
    free_pages(pages, 4);
    tm_stop(&t);
}

/* Bad requests answered with an error status */
static void test_bad_status(void *obj, void *data, QGuestAllocator *alloc)
{
    g_autofree uint8_t *a = make_page(12);
    g_autofree uint8_t *big = g_malloc0(2 * PAGE);
    uint64_t slots[4] = { 1, 2, TEST_SLOTS, 3 };
    uint8_t *keep[4];
    Tm t;
    int i;

    tm_start(&t, obj, alloc);
    put_range(&t, 0, 4, keep);

    /* unknown request types */
    g_assert_cmpuint(tm_simple(&t, 0, 0, 0), ==, VIRTIO_TMEM_S_UNSUPP);
    g_assert_cmpuint(tm_simple(&t, 7, 0, 0), ==, VIRTIO_TMEM_S_UNSUPP);
    g_assert_cmpuint(tm_simple(&t, 0xffffffff, 0, 0), ==,
                     VIRTIO_TMEM_S_UNSUPP);
    /* PUT: short page, long page, no page, page in the device-writable part */
    g_assert_cmpuint(tm_req(&t, VIRTIO_TMEM_T_PUT, 5, 0, a, 100, RESP, NULL),
                     ==, VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(tm_req(&t, VIRTIO_TMEM_T_PUT, 5, 0, big, PAGE + 1, RESP,
                            NULL), ==, VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(tm_simple(&t, VIRTIO_TMEM_T_PUT, 5, 0), ==,
                     VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(tm_req(&t, VIRTIO_TMEM_T_PUT, 5, 0, NULL, 0, PAGE + RESP,
                            NULL), ==, VIRTIO_TMEM_S_INVAL);
    assert_slot(&t, 5, NULL);
    /* GET: no room for the page, page room device-readable, extra bytes */
    g_assert_cmpuint(tm_simple(&t, VIRTIO_TMEM_T_GET, 1, 0), ==,
                     VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(tm_req(&t, VIRTIO_TMEM_T_GET, 1, 0, big, PAGE, RESP,
                            NULL), ==, VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(tm_req(&t, VIRTIO_TMEM_T_GET, 1, 0, NULL, 0, PAGE, NULL),
                     ==, VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(tm_req(&t, VIRTIO_TMEM_T_GET, 1, 0, big, 8,
                            PAGE + RESP, NULL), ==, VIRTIO_TMEM_S_INVAL);
    /* INVALIDATE and ALL with a payload or a page room */
    g_assert_cmpuint(tm_req(&t, VIRTIO_TMEM_T_INVALIDATE, 1, 0, big, 8, RESP,
                            NULL), ==, VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(tm_req(&t, VIRTIO_TMEM_T_INVALIDATE_ALL, 0, 0, NULL, 0,
                            PAGE + RESP, NULL), ==, VIRTIO_TMEM_S_INVAL);
    /* slots out of range */
    g_assert_cmpuint(tm_put(&t, TEST_SLOTS, a), ==, VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(tm_put(&t, UINT64_MAX, a), ==, VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(tm_put(&t, 1ull << 32, a), ==, VIRTIO_TMEM_S_INVAL);
    assert_slot(&t, 0, keep[0]);
    g_assert_cmpuint(tm_get(&t, TEST_SLOTS, big), ==, VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(tm_simple(&t, VIRTIO_TMEM_T_INVALIDATE, TEST_SLOTS, 0),
                     ==, VIRTIO_TMEM_S_INVAL);
    /* ranges that leave the slots or overflow; nothing is dropped */
    g_assert_cmpuint(tm_simple(&t, VIRTIO_TMEM_T_INVALIDATE_RANGE, 1,
                               UINT64_MAX), ==, VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(tm_simple(&t, VIRTIO_TMEM_T_INVALIDATE_RANGE, UINT64_MAX,
                               2), ==, VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(tm_simple(&t, VIRTIO_TMEM_T_INVALIDATE_RANGE, 0,
                               TEST_SLOTS + 1), ==, VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(tm_simple(&t, VIRTIO_TMEM_T_INVALIDATE_RANGE,
                               TEST_SLOTS + 1, 0), ==, VIRTIO_TMEM_S_INVAL);
    /* batches: too many, count and buffer disagree, a bad slot */
    g_assert_cmpuint(tm_batch(&t, slots, VIRTIO_TMEM_MAX_BATCH + 1, 4), ==,
                     VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(tm_batch(&t, slots, UINT64_MAX, 4), ==,
                     VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(tm_batch(&t, slots, 1ull << 61, 0), ==,
                     VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(tm_batch(&t, slots, 3, 2), ==, VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(tm_batch(&t, slots, 1, 2), ==, VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(tm_batch(&t, slots, 4, 4), ==, VIRTIO_TMEM_S_INVAL);
    for (i = 0; i < 4; i++) {
        assert_slot(&t, i, keep[i]);
    }
    g_assert_cmpuint(tm_stat(&t, "stored-pages"), ==, 4);
    g_assert_false(t.dev->bus->get_status(t.dev) &
                   VIRTIO_CONFIG_S_NEEDS_RESET);
    assert_alive(&t);
    free_pages(keep, 4);
    tm_stop(&t);
}

/* A header shorter than 24 bytes: INVAL */
static void test_bad_short_header(void *obj, void *data,
                                  QGuestAllocator *alloc)
{
    uint64_t out, in;
    uint32_t head, hdr[2] = { cpu_to_le32(VIRTIO_TMEM_T_INVALIDATE_ALL) };
    Tm t;

    tm_start(&t, obj, alloc);
    out = guest_alloc(alloc, 8);
    in = guest_alloc(alloc, RESP);
    qtest_memwrite(t.qts, out, hdr, 8);
    head = qvirtqueue_add(t.qts, t.vq, out, 8, false, true);
    qvirtqueue_add(t.qts, t.vq, in, RESP, true, false);
    publish(&t, &head, 1);
    qvirtio_wait_used_elem(t.qts, t.dev, t.vq, head, NULL, TMEM_TIMEOUT_US);
    g_assert_cmpuint(qtest_readl(t.qts, in), ==, VIRTIO_TMEM_S_INVAL);

    /* no device-readable part at all */
    head = qvirtqueue_add(t.qts, t.vq, in, RESP, true, false);
    publish(&t, &head, 1);
    qvirtio_wait_used_elem(t.qts, t.dev, t.vq, head, NULL, TMEM_TIMEOUT_US);
    g_assert_cmpuint(qtest_readl(t.qts, in), ==, VIRTIO_TMEM_S_INVAL);
    assert_alive(&t);
    tm_stop(&t);
}

typedef enum {
    BROKEN_NO_RESP,         /* response descriptor device-readable */
    BROKEN_ONLY_OUT,        /* header only */
    BROKEN_SHORT_RESP,      /* 2 device-writable bytes */
    BROKEN_HUGE_IN,         /* more device-writable bytes than any request */
    BROKEN_BEYOND_RAM,      /* a buffer crossing the end of guest RAM */
    BROKEN_MMIO_RESP,       /* the response in the device's own BAR */
    BROKEN_MMIO_HDR,        /* the header in the device's own BAR */
} BrokenKind;

/* Requests without room for a status break the device; QEMU survives. */
static void test_bad_broken(void *obj, void *data, QGuestAllocator *alloc)
{
    BrokenKind kind = ((TestArg *)data)->kind;
    g_autofree uint8_t *a = make_page(13);
    struct virtio_tmem_req_hdr hdr = {
        .type = cpu_to_le32(VIRTIO_TMEM_T_PUT),
        .slot = cpu_to_le64(3),
    };
    uint64_t out, in, ram_end;
    uint32_t head;
    Tm t;

    tm_start(&t, obj, alloc);
    g_assert_cmpuint(tm_put(&t, 1, a), ==, VIRTIO_TMEM_S_OK);
    out = guest_alloc(alloc, HDR + PAGE);
    in = guest_alloc(alloc, 2 * PAGE);
    qtest_memwrite(t.qts, out, &hdr, HDR);
    qtest_memwrite(t.qts, out + HDR, a, PAGE);
    head = qvirtqueue_add(t.qts, t.vq, out, HDR, false, true);
    switch (kind) {
    case BROKEN_NO_RESP:
        qvirtqueue_add(t.qts, t.vq, out + HDR, PAGE, false, true);
        qvirtqueue_add(t.qts, t.vq, in, RESP, false, false);
        break;
    case BROKEN_ONLY_OUT:
        qvirtqueue_add(t.qts, t.vq, out + HDR, PAGE, false, false);
        break;
    case BROKEN_SHORT_RESP:
        qvirtqueue_add(t.qts, t.vq, out + HDR, PAGE, false, true);
        qvirtqueue_add(t.qts, t.vq, in, 2, true, false);
        break;
    case BROKEN_HUGE_IN:
        qvirtqueue_add(t.qts, t.vq, out + HDR, PAGE, false, true);
        qvirtqueue_add(t.qts, t.vq, in, 2 * PAGE, true, false);
        break;
    case BROKEN_BEYOND_RAM:
        /*
         * The pc machine of qos-test has 128 MiB of RAM. The header
         * crosses its end (QEMU maps the part beyond through its one
         * bounce buffer), the page lies far beyond it: virtqueue_pop()
         * cannot map it and QEMU's own virtio_error() path runs.
         */
        ram_end = 128 * MiB;
        qvirtqueue_add(t.qts, t.vq, ram_end - 16, HDR, false, true);
        qvirtqueue_add(t.qts, t.vq, 1ull << 40, PAGE, false, true);
        qvirtqueue_add(t.qts, t.vq, in, RESP, true, false);
        break;
    case BROKEN_MMIO_RESP:
        /*
         * MMIO is mapped through QEMU's bounce buffer. Were the status
         * written back, it would land in device_status: a reset from
         * inside the request handler (an abort in the IOThread).
         */
        qvirtqueue_add(t.qts, t.vq, out + HDR, PAGE, false, true);
        qvirtqueue_add(t.qts, t.vq,
                       tm_common_addr(&t, VIRTIO_PCI_COMMON_STATUS), RESP,
                       true, false);
        break;
    case BROKEN_MMIO_HDR:
        /* a PUT whose header is the common configuration */
        head = qvirtqueue_add(t.qts, t.vq, tm_common_addr(&t, 0), HDR, false,
                              true);
        qvirtqueue_add(t.qts, t.vq, out + HDR, PAGE, false, true);
        qvirtqueue_add(t.qts, t.vq, in, RESP, true, false);
        break;
    }
    publish(&t, &head, 1);
    g_assert_true(device_broken(&t));
    /* no completion for the bad request */
    g_assert_false(qvirtqueue_get_buf(t.qts, t.vq, NULL, NULL));
    assert_alive(&t);
    g_assert_cmpuint(tm_stat(&t, "stored-pages"), ==, 1);

    /* a reset makes it work again (and empties the store) */
    tm_restart(&t);
    g_assert_false(t.dev->bus->get_status(t.dev) &
                   VIRTIO_CONFIG_S_NEEDS_RESET);
    assert_slot(&t, 1, NULL);
    g_assert_cmpuint(tm_put(&t, 1, a), ==, VIRTIO_TMEM_S_OK);
    assert_slot(&t, 1, a);
    guest_free(alloc, out);
    guest_free(alloc, in);
    tm_stop(&t);
}

/*
 * Before DRIVER_OK nothing is served (virtio 1.x 2.1.2), and a limit
 * change still bumps the config generation; DRIVER_OK serves what waits.
 */
static void test_driver_ok(void *obj, void *data, QGuestAllocator *alloc)
{
    g_autofree uint8_t *a = make_page(31);
    uint8_t gen;
    Req r;
    Tm t;
    int i;

    tm_setup(&t, obj, alloc);
    gen = tm_generation(&t);
    qom_set_u64(&t, BACKEND_PATH, "limit", 32 * MiB);
    g_assert_cmpuint(tm_generation(&t), ==, (uint8_t)(gen + 1));
    g_assert_cmpuint(qvirtio_config_readq(t.dev,
                         offsetof(struct virtio_tmem_config, limit)), ==,
                     32 * MiB);

    req_add(&t, &r, VIRTIO_TMEM_T_PUT, 3, 0, a, PAGE, RESP);
    publish(&t, &r.head, 1);
    for (i = 0; i < 50; i++) {
        qtest_clock_step(t.qts, 100);
        g_usleep(2000);
    }
    g_assert_false(qvirtqueue_get_buf(t.qts, t.vq, NULL, NULL));
    g_assert_cmpuint(tm_stat(&t, "puts"), ==, 0);

    qvirtio_set_driver_ok(t.dev);
    req_wait(&t, &r, true);
    g_assert_cmpuint(req_status(&t, &r), ==, VIRTIO_TMEM_S_OK);
    req_free(&t, &r);
    assert_slot(&t, 3, a);
    /* after DRIVER_OK: notified, and the generation moves on */
    gen = tm_generation(&t);
    qom_set_u64(&t, DEV_PATH, "limit", 16 * MiB);
    qvirtio_wait_config_isr(t.dev, TMEM_TIMEOUT_US);
    g_assert_cmpuint(tm_generation(&t), !=, gen);
    tm_stop(&t);
}

/*
 * INVALIDATE_ALL on 2^32 slots runs in bounded steps: QMP is answered
 * while it runs, and no handler call is long.
 */
static void test_invalidate_huge(void *obj, void *data, QGuestAllocator *alloc)
{
    g_autofree uint8_t *a = make_page(32);
    uint64_t last = (1ull << 32) - 1;
    gint64 start, rtt, longest = 0;
    int answered = 0;
    Req r;
    Tm t;

    tm_start(&t, obj, alloc);
    g_assert_cmpuint(t.nr_slots, ==, 1ull << 32);
    g_assert_cmpuint(tm_put(&t, 0, a), ==, VIRTIO_TMEM_S_OK);
    g_assert_cmpuint(tm_put(&t, last, a), ==, VIRTIO_TMEM_S_OK);

    req_add(&t, &r, VIRTIO_TMEM_T_INVALIDATE_ALL, 0, 0, NULL, 0, RESP);
    publish(&t, &r.head, 1);
    for (;;) {
        QDict *resp;
        bool done = qtest_readw(t.qts, t.vq->used + 2) != t.vq->last_used_idx;

        if (done) {
            break;
        }
        start = g_get_monotonic_time();
        resp = qtest_qmp(t.qts, "{'execute': 'query-status'}");
        rtt = g_get_monotonic_time() - start;
        g_assert(qdict_haskey(resp, "return"));
        qobject_unref(resp);
        longest = MAX(longest, rtt);
        answered++;
    }
    g_test_message("QMP answered %d times during INVALIDATE_ALL, longest"
                   " round trip %" PRId64 " us; longest handler call %"
                   PRIu64 " ns", answered, longest,
                   tm_stat(&t, "longest-call-ns"));
    /*
     * The store skips untouched parts of its slot table, so in an IOThread
     * the whole request may end before the first QMP command: what must
     * hold is that no handler call and no QMP round trip is long.
     */
    g_assert_cmpuint(tm_stat(&t, "longest-call-ns"), <, 100 * 1000 * 1000);
    g_assert_cmpint(longest, <, 500 * 1000);
    req_wait(&t, &r, true);
    g_assert_cmpuint(req_status(&t, &r), ==, VIRTIO_TMEM_S_OK);
    req_free(&t, &r);
    assert_slot(&t, 0, NULL);
    assert_slot(&t, last, NULL);
    g_assert_cmpuint(tm_stat(&t, "stored-pages"), ==, 0);
    /* the device works on afterwards */
    g_assert_cmpuint(tm_put(&t, last, a), ==, VIRTIO_TMEM_S_OK);
    assert_slot(&t, last, a);
    tm_stop(&t);
}

/* x-query-virtio-status knows the device (QEMU 7.2 aborted on its ID) */
static void test_virtio_status(void *obj, void *data, QGuestAllocator *alloc)
{
    QDict *resp, *ret, *features;
    QListEntry *e;
    bool shrink = false;
    Tm t;

    tm_start(&t, obj, alloc);
    resp = qtest_qmp(t.qts, "{'execute': 'x-query-virtio-status',"
                     " 'arguments': {'path': %s}}", BACKEND_PATH);
    g_assert(qdict_haskey(resp, "return"));
    ret = qdict_get_qdict(resp, "return");
    g_assert_cmpstr(qdict_get_str(ret, "name"), ==, "virtio-tmem");
    g_assert_cmpint(qdict_get_int(ret, "device-id"), ==, VIRTIO_ID_TMEM);
    features = qdict_get_qdict(ret, "guest-features");
    QLIST_FOREACH_ENTRY(qdict_get_qlist(features, "dev-features"), e) {
        const char *f = qstring_get_str(qobject_to(QString, e->value));

        shrink |= g_str_has_prefix(f, "VIRTIO_TMEM_F_SHRINK");
    }
    g_assert_true(shrink);
    qobject_unref(resp);
    assert_alive(&t);
    tm_stop(&t);
}

/*
 * Queue reset while requests are in flight (and with an IOThread, while
 * it serves them); enabling the queue in use without a reset is refused.
 */
static void test_queue_reset(void *obj, void *data, QGuestAllocator *alloc)
{
    g_autofree uint8_t *a = make_page(33);
    g_autofree uint8_t *b = make_page(34);
    uint32_t heads[16];
    Req r[16];
    Tm t;
    int i;

    tm_start(&t, obj, alloc);
    g_assert_cmpuint(tm_put(&t, 1, a), ==, VIRTIO_TMEM_S_OK);
    for (i = 0; i < 16; i++) {
        req_add(&t, &r[i], VIRTIO_TMEM_T_PUT, 100 + i, 0, b, PAGE, RESP);
        heads[i] = r[i].head;
    }
    publish(&t, heads, 16);
    tm_queue_reset(&t);
    for (i = 0; i < 16; i++) {
        req_free(&t, &r[i]);
    }
    g_assert_false(t.dev->bus->get_status(t.dev) &
                   VIRTIO_CONFIG_S_NEEDS_RESET);
    /* the store is the device's, not the queue's */
    assert_slot(&t, 1, a);
    g_assert_cmpuint(tm_put(&t, 2, b), ==, VIRTIO_TMEM_S_OK);
    assert_slot(&t, 2, b);
    tm_queue_reset(&t);
    assert_slot(&t, 2, b);

    /* Q_ENABLE on the queue in use, without Q_RESET */
    tm_common_writew(&t, VIRTIO_PCI_COMMON_Q_SELECT, VIRTIO_TMEM_VQ_REQ);
    tm_common_writew(&t, VIRTIO_PCI_COMMON_Q_ENABLE, 1);
    g_assert_true(device_broken(&t));
    assert_alive(&t);
    tm_stop(&t);
}

static uint64_t qdict_u64(QDict *d, const char *key)
{
    QNum *num = qobject_to(QNum, qdict_get(d, key));
    uint64_t value;

    g_assert(num);
    g_assert_true(qnum_get_try_uint(num, &value));
    return value;
}

/* "stats": every statistic in one struct, equal to the single ones */
static void test_stats(void *obj, void *data, QGuestAllocator *alloc)
{
    static const char *const names[] = {
        "stored-pages", "same-filled-pages", "raw-pages", "compressed-bytes",
        "memory-held", "metadata-bytes", "puts", "gets", "invalidations",
        "refusals", "fragmentation", "compactions", "compact-objects-moved",
        "compact-bytes-freed", "pool-limit",
    };
    g_autofree uint8_t *a = make_page(2);
    g_autofree uint8_t *b = make_page(35);
    QDict *resp, *st;
    size_t i;
    Tm t;

    tm_start(&t, obj, alloc);
    g_assert_cmpuint(tm_put(&t, 1, a), ==, VIRTIO_TMEM_S_OK);
    g_assert_cmpuint(tm_put(&t, 2, b), ==, VIRTIO_TMEM_S_OK);
    assert_slot(&t, 2, b);
    resp = qtest_qmp(t.qts, "{'execute': 'qom-get', 'arguments':"
                     " {'path': %s, 'property': 'stats'}}", DEV_PATH);
    g_assert(qdict_haskey(resp, "return"));
    st = qdict_get_qdict(resp, "return");
    for (i = 0; i < G_N_ELEMENTS(names); i++) {
        g_assert_cmpuint(qdict_u64(st, names[i]), ==,
                         qom_get_u64(&t, BACKEND_PATH, names[i]));
    }
    g_assert_cmpuint(qdict_u64(st, "stored-pages"), ==, 2);
    g_assert_cmpuint(qdict_u64(st, "puts"), ==, 2);
    g_assert_cmpuint(qdict_u64(st, "gets"), ==, 1);
    g_assert_true(qdict_haskey(st, "longest-call-ns"));
    g_assert_true(qdict_haskey(st, "compact-longest-step-ns"));
    qobject_unref(resp);
    tm_stop(&t);
}

static void qom_set_bool(Tm *t, const char *path, const char *prop,
                         bool value)
{
    QDict *resp = qtest_qmp(t->qts, "{'execute': 'qom-set', 'arguments':"
                            " {'path': %s, 'property': %s, 'value': %i}}",
                            path, prop, value);

    g_assert(qdict_haskey(resp, "return"));
    qobject_unref(resp);
}

/* Wait (real time: compaction runs from a main-loop bottom half) */
static bool wait_compactions(Tm *t, uint64_t want)
{
    gint64 end = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;

    while (tm_stat(t, "compactions") < want ||
           qom_get_bool(t, DEV_PATH, "compact")) {
        if (g_get_monotonic_time() > end) {
            return false;
        }
        g_usleep(10 * 1000);
    }
    return true;
}

/* Store n half pages at slots 0 .. n-1, resetting the queue as needed */
static void put_half_pages(Tm *t, uint8_t **pages, int n, int seed)
{
    int i;

    for (i = 0; i < n; i++) {
        if (!tm_room(t, 1)) {
            tm_queue_reset(t);
        }
        pages[i] = make_half_page(seed + i);
        g_assert_cmpuint(tm_put(t, i, pages[i]), ==, VIRTIO_TMEM_S_OK);
    }
}

/* Drop the even slots of 0 .. n-1 with one batch */
static void drop_even(Tm *t, int n)
{
    g_autofree uint64_t *even = g_new(uint64_t, n / 2);
    int i;

    for (i = 0; i < n / 2; i++) {
        even[i] = 2 * i;
    }
    if (!tm_room(t, 1)) {
        tm_queue_reset(t);
    }
    g_assert_cmpuint(tm_batch(t, even, n / 2, n / 2), ==, VIRTIO_TMEM_S_OK);
}

static void assert_odd_kept(Tm *t, uint8_t **pages, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        if (!tm_room(t, 1)) {
            tm_queue_reset(t);
        }
        assert_slot(t, i, i & 1 ? pages[i] : NULL);
    }
}

/* The manual trigger ("compact") and the counters */
#define COMPACT_PAGES 32
static void test_compact(void *obj, void *data, QGuestAllocator *alloc)
{
    uint8_t *pages[COMPACT_PAGES];
    uint64_t held, frag;
    Tm t;

    tm_start(&t, obj, alloc);
    g_assert_false(qom_get_bool(&t, DEV_PATH, "compact"));
    put_half_pages(&t, pages, COMPACT_PAGES, 5000);
    drop_even(&t, COMPACT_PAGES);
    held = tm_stat(&t, "memory-held");
    frag = tm_stat(&t, "fragmentation");
    g_assert_cmpuint(frag, >, 0);
    /* below every automatic threshold */
    g_assert_cmpuint(tm_stat(&t, "compactions"), ==, 0);

    qom_set_bool(&t, DEV_PATH, "compact", true);
    g_assert_true(wait_compactions(&t, 1));
    g_assert_cmpuint(tm_stat(&t, "compactions"), ==, 1);
    g_assert_cmpuint(tm_stat(&t, "compact-objects-moved"), >, 0);
    g_assert_cmpuint(tm_stat(&t, "compact-bytes-freed"), >, 0);
    g_assert_cmpuint(tm_stat(&t, "memory-held"), <, held);
    g_assert_cmpuint(tm_stat(&t, "fragmentation"), <, frag);
    assert_odd_kept(&t, pages, COMPACT_PAGES);
    /* once more: a second pass finds less or nothing to do */
    qom_set_bool(&t, BACKEND_PATH, "compact", true);
    g_assert_true(wait_compactions(&t, 2));
    g_test_message("longest compaction step %" PRIu64 " ns",
                   tm_stat(&t, "compact-longest-step-ns"));
    free_pages(pages, COMPACT_PAGES);
    tm_stop(&t);
}

/* Lowering the limit starts a pass (here: no other trigger fires) */
static void test_compact_limit(void *obj, void *data, QGuestAllocator *alloc)
{
    uint8_t *pages[COMPACT_PAGES];
    uint64_t held;
    Tm t;

    tm_start(&t, obj, alloc);
    put_half_pages(&t, pages, COMPACT_PAGES, 7000);
    drop_even(&t, COMPACT_PAGES);
    held = tm_stat(&t, "memory-held");
    g_assert_cmpuint(tm_stat(&t, "compactions"), ==, 0);
    qom_set_u64(&t, DEV_PATH, "limit", held + 64 * KiB);
    g_assert_true(wait_compactions(&t, 1));
    g_assert_cmpuint(tm_stat(&t, "memory-held"), <, held);
    assert_odd_kept(&t, pages, COMPACT_PAGES);
    free_pages(pages, COMPACT_PAGES);
    tm_stop(&t);
}

/* A large invalidation leaving fragmentation starts a pass by itself */
#define AUTO_PAGES 512
static void test_compact_auto(void *obj, void *data, QGuestAllocator *alloc)
{
    uint8_t *pages[AUTO_PAGES];
    uint64_t held;
    Tm t;

    tm_start(&t, obj, alloc);
    put_half_pages(&t, pages, AUTO_PAGES, 6000);
    g_assert_cmpuint(tm_stat(&t, "compactions"), ==, 0);
    held = tm_stat(&t, "memory-held");
    drop_even(&t, AUTO_PAGES);
    g_assert_true(wait_compactions(&t, 1));
    g_assert_cmpuint(tm_stat(&t, "compact-bytes-freed"), >, 0);
    g_assert_cmpuint(tm_stat(&t, "memory-held"), <, held / 2 + held / 8);
    assert_odd_kept(&t, pages, AUTO_PAGES);
    g_test_message("longest compaction step %" PRIu64 " ns, longest"
                   " handler call %" PRIu64 " ns",
                   tm_stat(&t, "compact-longest-step-ns"),
                   tm_stat(&t, "longest-call-ns"));
    free_pages(pages, AUTO_PAGES);
    tm_stop(&t);
}

/*
 * A PUT refused at the limit is taken once compaction can make room: the
 * device compacts before the PUT, in the request's thread (no automatic
 * trigger fires here: too little fragmentation, too few pages dropped)
 */
static void test_compact_put(void *obj, void *data, QGuestAllocator *alloc)
{
    uint8_t *pages[COMPACT_PAGES * 2];
    g_autofree uint8_t *raw = make_page(9001);
    const int n = COMPACT_PAGES * 2;
    uint64_t limit, passes;
    Tm t;

    tm_start(&t, obj, alloc);
    put_half_pages(&t, pages, n, 9100);
    /*
     * The limit 3 pages above usage: room for small objects, not for a
     * new zspage of 4 pages (the pass that lowering starts has nothing to
     * do: there is no fragmentation yet)
     */
    limit = tm_stat(&t, "memory-held") + 3 * PAGE;
    qom_set_u64(&t, DEV_PATH, "limit", limit);
    g_assert_true(wait_compactions(&t, 1));
    g_assert_cmpuint(tm_stat(&t, "compact-objects-moved"), ==, 0);
    /* an incompressible page needs a zspage of its own: refused */
    if (!tm_room(&t, 2)) {
        tm_queue_reset(&t);
    }
    g_assert_cmpuint(tm_put(&t, n, raw), ==, VIRTIO_TMEM_S_NOSPACE);
    g_assert_cmpuint(tm_stat(&t, "refusals"), ==, 1);
    g_assert_cmpuint(tm_stat(&t, "compact-objects-moved"), ==, 0);
    passes = tm_stat(&t, "compactions");
    /* half of the objects go: their zspages can be emptied */
    drop_even(&t, n);
    g_assert_cmpuint(tm_stat(&t, "memory-held"), ==, limit - 3 * PAGE);
    g_assert_cmpuint(tm_stat(&t, "compactions"), ==, passes);
    if (!tm_room(&t, 1)) {
        tm_queue_reset(&t);
    }
    g_assert_cmpuint(tm_put(&t, n, raw), ==, VIRTIO_TMEM_S_OK);
    g_assert_cmpuint(tm_stat(&t, "compact-objects-moved"), >, 0);
    g_assert_cmpuint(tm_stat(&t, "compact-bytes-freed"), >, 0);
    g_assert_cmpuint(tm_stat(&t, "refusals"), ==, 1);
    g_assert_cmpuint(tm_stat(&t, "memory-held"), <=, limit);
    assert_odd_kept(&t, pages, n);
    if (!tm_room(&t, 1)) {
        tm_queue_reset(&t);
    }
    assert_slot(&t, n, raw);
    free_pages(pages, n);
    tm_stop(&t);
}

/*
 * Migration: a second QEMU (the destination) with this test's command
 * line (args: its "before" changes) and -incoming; its stderr goes to
 * errlog when given. The requests on the destination go through a copy
 * of the source's virtio-pci driver state on a PCI bus of the
 * destination's QTestState: guest RAM (rings, buffers) came along.
 */
typedef struct MigDest {
    QTestState *qts;
    QPCIBus *bus;
    QPCIDevice *pdev;
    QVirtioPCIDevice *vpci;
    Tm t;
} MigDest;

static void mig_dest_start(MigDest *d, TestArg *ta, const char *incoming,
                           const char *errlog)
{
    GString *cmd = g_string_new(qos_get_current_command_line());

    tmem_before(cmd, ta);
    g_string_append_printf(cmd, " -incoming '%s'", incoming);
    if (errlog) {
        g_string_append_printf(cmd, " 2>%s", errlog);
    }
    memset(d, 0, sizeof(*d));
    d->qts = qtest_init(cmd->str);
    g_string_free(cmd, true);
}

/* After the switchover: drive the device on the destination. */
static Tm *mig_dest_driver(MigDest *d, Tm *src)
{
    QVirtioPCIDevice *p = tm_pci(src);

    d->bus = qpci_new_pc(d->qts, NULL);
    d->pdev = g_memdup2(p->pdev, sizeof(*p->pdev));
    d->pdev->bus = d->bus;
    d->vpci = g_memdup2(p, sizeof(*p));
    d->vpci->pdev = d->pdev;
    d->t = *src;
    d->t.qts = d->qts;
    d->t.dev = &d->vpci->vdev;
    return &d->t;
}

static void mig_dest_free(MigDest *d)
{
    qtest_quit(d->qts);
    g_free(d->vpci);
    g_free(d->pdev);
    if (d->bus) {
        qpci_free_pc(d->bus);
    }
}

static void qmp_ok(QTestState *qts, QDict *resp)
{
    if (!qdict_haskey(resp, "return")) {
        g_test_message("QMP error: %s",
                       qdict_get_str(qdict_get_qdict(resp, "error"), "desc"));
    }
    g_assert(qdict_haskey(resp, "return"));
    qobject_unref(resp);
}

static void mig_bandwidth(QTestState *qts, uint64_t bytes_per_s)
{
    qmp_ok(qts, qtest_qmp(qts, "{'execute': 'migrate-set-parameters',"
                          " 'arguments': {'max-bandwidth': %" PRIu64 "}}",
                          bytes_per_s));
}

static void mig_start(QTestState *qts, const char *uri)
{
    qmp_ok(qts, qtest_qmp(qts, "{'execute': 'migrate', 'arguments':"
                          " {'uri': %s}}", uri));
}

static char *mig_status(QTestState *qts)
{
    QDict *resp = qtest_qmp(qts, "{'execute': 'query-migrate'}");
    QDict *ret = qdict_get_qdict(resp, "return");
    char *status = g_strdup(qdict_haskey(ret, "status") ?
                            qdict_get_str(ret, "status") : "none");

    qobject_unref(resp);
    return status;
}

/* Wait until the migration's status is one of want ("a|b"). */
static char *mig_wait(QTestState *qts, const char *want)
{
    gint64 end = g_get_monotonic_time() + 60 * G_USEC_PER_SEC;
    g_auto(GStrv) wants = g_strsplit(want, "|", 0);

    for (;;) {
        char *status = mig_status(qts);

        if (g_strv_contains((const char * const *)wants, status)) {
            return status;
        }
        g_assert_cmpint(g_get_monotonic_time(), <, end);
        g_free(status);
        g_usleep(10 * 1000);
    }
}

static void mig_wait_done(QTestState *qts)
{
    g_autofree char *status = mig_wait(qts, "completed|failed|cancelled");

    g_assert_cmpstr(status, ==, "completed");
}

static void assert_running(QTestState *qts, bool want)
{
    QDict *resp = qtest_qmp(qts, "{'execute': 'query-status'}");

    g_assert_cmpint(qdict_get_bool(qdict_get_qdict(resp, "return"),
                                   "running"), ==, want);
    qobject_unref(resp);
}

/* The page mix of the migration tests (kinds as make_page, 3+ random) */
#define MIG_PAGES 16
static void mig_put_pages(Tm *t, uint8_t **pages)
{
    int i;

    for (i = 0; i < MIG_PAGES; i++) {
        pages[i] = i % 4 == 3 ? make_half_page(5000 + i)
                              : make_page(i < 3 ? i : 5000 + i);
        g_assert_cmpuint(tm_put(t, 7 * i, pages[i]), ==, VIRTIO_TMEM_S_OK);
    }
}

/* Every page, byte for byte; the slots in between empty */
static void mig_check_pages(Tm *t, uint8_t **pages)
{
    int i;

    for (i = 0; i < MIG_PAGES; i++) {
        assert_slot(t, 7 * i, pages[i]);
    }
    assert_slot(t, 1, NULL);
    assert_slot(t, TEST_SLOTS - 1, NULL);
}

static void mig_report(Tm *src, Tm *dst, const char *what)
{
    g_test_message("%s: %" PRIu64 " pages (%" PRIu64 " bytes held), stream"
                   " %" PRIu64 " bytes", what, tm_stat(dst, "stored-pages"),
                   tm_stat(dst, "memory-held"),
                   tm_stat(src, "migration-bytes"));
}

/* A migration capability on qts; false (and the reason in err) if refused */
static bool mig_capability(QTestState *qts, const char *cap, char **err)
{
    QDict *resp = qtest_qmp(qts, "{'execute': 'migrate-set-capabilities',"
                            " 'arguments': {'capabilities': [{'capability':"
                            " %s, 'state': true}]}}", cap);
    bool ok = qdict_haskey(resp, "return");

    if (!ok && err) {
        *err = g_strdup(qdict_get_str(qdict_get_qdict(resp, "error"),
                                      "desc"));
    }
    qobject_unref(resp);
    return ok;
}

/* The address of a destination started with -incoming tcp:HOST:0 */
static char *mig_dest_tcp_uri(QTestState *qts)
{
    QDict *resp = qtest_qmp(qts, "{'execute': 'query-migrate'}");
    QList *addrs = qdict_get_qlist(qdict_get_qdict(resp, "return"),
                                   "socket-address");
    QDict *addr = qobject_to(QDict, qlist_peek(addrs));
    char *uri = g_strdup_printf("tcp:%s:%s", qdict_get_str(addr, "host"),
                                qdict_get_str(addr, "port"));

    qobject_unref(resp);
    return uri;
}

typedef enum MigHow {
    MIG_UNIX,
    MIG_TCP,
    MIG_POSTCOPY,       /* over a unix socket, switched to postcopy */
} MigHow;

/*
 * Live migration: pages PUT before, and PUTs and INVALIDATEs while the
 * migration runs (the dirty log), arrive byte for byte; the destination's
 * device serves requests. With postcopy, the destination's guest runs
 * (and the device serves a GET) while RAM is still coming: the device's
 * records are complete before that, as the device is not postcopiable.
 */
static void mig_live(void *obj, void *data, QGuestAllocator *alloc,
                     MigHow how)
{
    g_autofree char *dir = g_dir_make_tmp("vtmem-mig-XXXXXX", NULL);
    g_autofree char *sock = g_build_filename(dir, "mig.sock", NULL);
    g_autofree char *uri = NULL;
    g_autofree char *refused = NULL;
    uint8_t *pages[MIG_PAGES];
    g_autofree uint8_t *late = make_page(6001);
    g_autofree char *status = NULL;
    MigDest d;
    Tm t, *dt;
    int i;

    tm_start(&t, obj, alloc);
    mig_put_pages(&t, pages);
    if (how == MIG_TCP) {
        mig_dest_start(&d, data, "tcp:127.0.0.1:0", NULL);
        uri = mig_dest_tcp_uri(d.qts);
    } else {
        uri = g_strdup_printf("unix:%s", sock);
        mig_dest_start(&d, data, uri, NULL);
    }
    if (how == MIG_POSTCOPY) {
        if (!mig_capability(d.qts, "postcopy-ram", &refused)) {
            /* no userfaultfd for this process */
            g_test_skip(refused);
            free_pages(pages, MIG_PAGES);
            mig_dest_free(&d);
            tm_stop(&t);
            rmdir(dir);
            return;
        }
        g_assert_true(mig_capability(t.qts, "postcopy-ram", NULL));
        /*
         * Slow postcopy too: the guest runs there before RAM is all in.
         * QEMU switches to postcopy only when what must go before the
         * switch (our records) fits the downtime at the measured rate:
         * 100 kB/s for 2 s.
         */
        qmp_ok(t.qts, qtest_qmp(t.qts, "{'execute': 'migrate-set-parameters',"
                                " 'arguments': {'max-postcopy-bandwidth':"
                                " 100000, 'downtime-limit': 2000}}"));
    }
    /* slow: the migration is still running while the guest changes pages */
    mig_bandwidth(t.qts, 100 * 1000);
    mig_start(t.qts, uri);
    g_free(mig_wait(t.qts, "active"));
    g_assert_cmpuint(tm_put(&t, 7 * 2, late), ==, VIRTIO_TMEM_S_OK);
    g_free(pages[2]);
    pages[2] = g_memdup2(late, PAGE);
    g_assert_cmpuint(tm_simple(&t, VIRTIO_TMEM_T_INVALIDATE, 7 * 5, 0), ==,
                     VIRTIO_TMEM_S_OK);
    g_assert_cmpuint(tm_put(&t, 7 * 5 + 1, pages[5]), ==, VIRTIO_TMEM_S_OK);
    status = mig_status(t.qts);
    g_assert_cmpstr(status, ==, "active");
    if (how == MIG_POSTCOPY) {
        qmp_ok(t.qts, qtest_qmp(t.qts,
                                "{'execute': 'migrate-start-postcopy'}"));
        g_free(mig_wait(t.qts, "postcopy-active"));
        qtest_qmp_eventwait(d.qts, "RESUME");
        dt = mig_dest_driver(&d, &t);
        assert_slot(dt, 7 * 2, late);
        g_free(status);
        status = mig_status(t.qts);
        g_test_message("GET on the destination during %s", status);
        mig_bandwidth(t.qts, 0);
        qmp_ok(t.qts, qtest_qmp(t.qts, "{'execute': 'migrate-set-parameters',"
                                " 'arguments': {'max-postcopy-bandwidth':"
                                " 0}}"));
        mig_wait_done(t.qts);
    } else {
        mig_bandwidth(t.qts, 0);
        mig_wait_done(t.qts);
        qtest_qmp_eventwait(d.qts, "RESUME");
        dt = mig_dest_driver(&d, &t);
    }

    mig_report(&t, dt, uri);
    g_assert_cmpuint(tm_stat(dt, "stored-pages"), ==, MIG_PAGES);
    for (i = 0; i < MIG_PAGES; i++) {
        if (i != 5) {
            assert_slot(dt, 7 * i, pages[i]);
        }
    }
    assert_slot(dt, 7 * 5, NULL);
    assert_slot(dt, 7 * 5 + 1, pages[5]);
    /* the destination stores new pages */
    g_assert_cmpuint(tm_put(dt, 3, late), ==, VIRTIO_TMEM_S_OK);
    assert_slot(dt, 3, late);
    g_assert_cmpuint(qvirtio_config_readq(dt->dev,
                         offsetof(struct virtio_tmem_config, usage)), ==,
                     tm_stat(dt, "memory-held"));
    free_pages(pages, MIG_PAGES);
    mig_dest_free(&d);
    tm_stop(&t);
    rmdir(dir);
}

static void test_migrate(void *obj, void *data, QGuestAllocator *alloc)
{
    mig_live(obj, data, alloc, MIG_UNIX);
}

static void test_migrate_tcp(void *obj, void *data, QGuestAllocator *alloc)
{
    mig_live(obj, data, alloc, MIG_TCP);
}

static void test_migrate_postcopy(void *obj, void *data,
                                  QGuestAllocator *alloc)
{
    mig_live(obj, data, alloc, MIG_POSTCOPY);
}

/*
 * A guest reset while the migration runs: the reset empties the store
 * (in steps) and the destination gets the empty store, not the pages of
 * before.
 */
static void test_migrate_reset(void *obj, void *data, QGuestAllocator *alloc)
{
    g_autofree char *dir = g_dir_make_tmp("vtmem-mig-XXXXXX", NULL);
    g_autofree char *sock = g_build_filename(dir, "mig.sock", NULL);
    g_autofree char *uri = g_strdup_printf("unix:%s", sock);
    uint8_t *pages[MIG_PAGES];
    MigDest d;
    Tm t;

    tm_start(&t, obj, alloc);
    mig_put_pages(&t, pages);
    mig_dest_start(&d, data, uri, NULL);
    mig_bandwidth(t.qts, 100 * 1000);
    mig_start(t.qts, uri);
    g_free(mig_wait(t.qts, "active"));
    qmp_ok(t.qts, qtest_qmp(t.qts, "{'execute': 'system_reset'}"));
    qtest_qmp_eventwait(t.qts, "RESET");
    mig_bandwidth(t.qts, 0);
    mig_wait_done(t.qts);
    qtest_qmp_eventwait(d.qts, "RESUME");
    g_assert_cmpuint(tm_stat(&t, "stored-pages"), ==, 0);
    d.t = t;
    d.t.qts = d.qts;
    g_assert_cmpuint(tm_stat(&d.t, "stored-pages"), ==, 0);
    g_assert_cmpuint(tm_stat(&d.t, "compressed-bytes"), ==, 0);
    free_pages(pages, MIG_PAGES);
    mig_dest_free(&d);
    tm_stop(&t);
    rmdir(dir);
}

/* Save to a file with the VM paused, load it in a new QEMU */
static void test_migrate_file(void *obj, void *data, QGuestAllocator *alloc)
{
    g_autofree char *dir = g_dir_make_tmp("vtmem-mig-XXXXXX", NULL);
    g_autofree char *file = g_build_filename(dir, "vm.state", NULL);
    g_autofree char *out = g_strdup_printf("exec:cat > %s", file);
    g_autofree char *in = g_strdup_printf("exec:cat %s", file);
    uint8_t *pages[MIG_PAGES];
    MigDest d;
    Tm t;

    tm_start(&t, obj, alloc);
    mig_put_pages(&t, pages);
    qmp_ok(t.qts, qtest_qmp(t.qts, "{'execute': 'stop'}"));
    mig_start(t.qts, out);
    mig_wait_done(t.qts);
    mig_dest_start(&d, data, in, NULL);
    /* saved paused: restored paused (as virsh restore --paused) */
    mig_wait_done(d.qts);
    qmp_ok(d.qts, qtest_qmp(d.qts, "{'execute': 'cont'}"));
    qtest_qmp_eventwait(d.qts, "RESUME");
    mig_check_pages(mig_dest_driver(&d, &t), pages);
    mig_report(&t, &d.t, "migrate-file");
    free_pages(pages, MIG_PAGES);
    mig_dest_free(&d);
    tm_stop(&t);
    unlink(file);
    rmdir(dir);
}

/* An HMP command that prints nothing (savevm and loadvm on success) */
static void hmp_quiet(QTestState *qts, const char *cmd)
{
    g_autofree char *out = qtest_hmp(qts, "%s", cmd);

    if (*out) {
        g_test_message("%s: %s", cmd, out);
    }
    g_assert_cmpstr(out, ==, "");
}

/*
 * An internal snapshot (savevm / loadvm, the VM state in the qcow2 disk):
 * loadvm brings the store back as it was at savevm, byte for byte, in the
 * same QEMU, whatever the guest changed in between; the device then
 * serves requests. The test's driver state is put back with the guest
 * RAM (the rings are in it).
 */
static void test_savevm(void *obj, void *data, QGuestAllocator *alloc)
{
    g_autofree uint8_t *late = make_page(6003);
    g_autofree char *dir = g_path_get_dirname(snapshot_disk);
    uint8_t *pages[MIG_PAGES];
    QVirtQueue at_savevm;
    Tm t;

    tm_start(&t, obj, alloc);
    mig_put_pages(&t, pages);
    at_savevm = *t.vq;
    hmp_quiet(t.qts, "savevm vtmem-snap");
    g_assert_cmpuint(tm_put(&t, 7 * 2, late), ==, VIRTIO_TMEM_S_OK);
    g_assert_cmpuint(tm_simple(&t, VIRTIO_TMEM_T_INVALIDATE, 7 * 5, 0), ==,
                     VIRTIO_TMEM_S_OK);
    g_assert_cmpuint(tm_put(&t, 1, late), ==, VIRTIO_TMEM_S_OK);
    assert_slot(&t, 7 * 2, late);
    hmp_quiet(t.qts, "loadvm vtmem-snap");
    *t.vq = at_savevm;
    assert_running(t.qts, true);
    mig_check_pages(&t, pages);
    g_assert_cmpuint(tm_stat(&t, "stored-pages"), ==, MIG_PAGES);
    g_assert_cmpuint(tm_put(&t, 3, late), ==, VIRTIO_TMEM_S_OK);
    assert_slot(&t, 3, late);
    free_pages(pages, MIG_PAGES);
    tm_stop(&t);
    unlink(snapshot_disk);
    rmdir(dir);
}

/* A cancelled migration leaves the source running with all its pages. */
static void test_migrate_cancel(void *obj, void *data,
                                QGuestAllocator *alloc)
{
    g_autofree uint8_t *late = make_page(6002);
    uint8_t *pages[MIG_PAGES];
    Tm t;

    tm_start(&t, obj, alloc);
    mig_put_pages(&t, pages);
    mig_bandwidth(t.qts, 10 * 1000);
    mig_start(t.qts, "exec:cat > /dev/null");
    g_free(mig_wait(t.qts, "active"));
    g_assert_cmpuint(tm_put(&t, 2, late), ==, VIRTIO_TMEM_S_OK);
    qmp_ok(t.qts, qtest_qmp(t.qts, "{'execute': 'migrate_cancel'}"));
    g_free(mig_wait(t.qts, "cancelled"));
    assert_running(t.qts, true);
    mig_check_pages(&t, pages);
    assert_slot(&t, 2, late);
    g_assert_cmpuint(tm_stat(&t, "stored-pages"), ==, MIG_PAGES + 1);
    g_assert_cmpuint(tm_put(&t, 4, late), ==, VIRTIO_TMEM_S_OK);
    assert_slot(&t, 4, late);
    free_pages(pages, MIG_PAGES);
    tm_stop(&t);
}

/*
 * A destination that refuses the stream exits with the reason; the
 * source's migration fails and it runs on with its pages. errlog gets
 * the destination's stderr; want is the message expected there.
 */
static void mig_refused(Tm *t, MigDest *d, const char *errlog,
                        const char *want, uint8_t **pages)
{
    g_autofree char *log = NULL;
    gint64 end = g_get_monotonic_time() + 60 * G_USEC_PER_SEC;

    qtest_set_expected_status(d->qts, 1);
    while (qtest_probe_child(d->qts)) {
        g_assert_cmpint(g_get_monotonic_time(), <, end);
        g_usleep(10 * 1000);
    }
    g_assert_true(g_file_get_contents(errlog, &log, NULL, NULL));
    g_test_message("destination: %s", log);
    g_assert_nonnull(strstr(log, want));
    if (t) {
        g_autofree char *status = mig_wait(t->qts,
                                           "completed|failed|cancelled");

        g_assert_cmpstr(status, ==, "failed");
        assert_running(t->qts, true);
        mig_check_pages(t, pages);
    }
    mig_dest_free(d);
    unlink(errlog);
}

/* The destination has another slot count: refused, with the reason. */
static void test_migrate_slots(void *obj, void *data, QGuestAllocator *alloc)
{
    g_autofree char *dir = g_dir_make_tmp("vtmem-mig-XXXXXX", NULL);
    g_autofree char *sock = g_build_filename(dir, "mig.sock", NULL);
    g_autofree char *errlog = g_build_filename(dir, "dest.log", NULL);
    g_autofree char *uri = g_strdup_printf("unix:%s", sock);
    TestArg other = *(TestArg *)data;
    uint8_t *pages[MIG_PAGES];
    MigDest d;
    Tm t;

    tm_start(&t, obj, alloc);
    mig_put_pages(&t, pages);
    other.slots = "2048";
    mig_dest_start(&d, &other, uri, errlog);
    mig_start(t.qts, uri);
    mig_refused(&t, &d, errlog, "source has 1024 slots, destination 2048",
                pages);
    free_pages(pages, MIG_PAGES);
    tm_stop(&t);
    rmdir(dir);
}

/*
 * A saved stream with one record's kind changed: the load fails with the
 * decoder's reason (and the destination keeps nothing).
 */
static void test_migrate_corrupt(void *obj, void *data,
                                 QGuestAllocator *alloc)
{
    g_autofree char *dir = g_dir_make_tmp("vtmem-mig-XXXXXX", NULL);
    g_autofree char *file = g_build_filename(dir, "vm.state", NULL);
    g_autofree char *errlog = g_build_filename(dir, "dest.log", NULL);
    g_autofree char *out = g_strdup_printf("exec:cat > %s", file);
    g_autofree char *in = g_strdup_printf("exec:cat %s", file);
    g_autofree uint8_t *needle = g_malloc(8 + PAGE);
    g_autofree char *state = NULL;
    uint8_t *pages[MIG_PAGES], *rec;
    gsize len;
    MigDest d;
    Tm t;

    tm_start(&t, obj, alloc);
    mig_put_pages(&t, pages);
    qmp_ok(t.qts, qtest_qmp(t.qts, "{'execute': 'stop'}"));
    mig_start(t.qts, out);
    mig_wait_done(t.qts);

    /* the RAW record of page 4 (random: stored raw) in slot 28 */
    stq_be_p(needle, (7 * 4) << 8 | 0x02);
    memcpy(needle + 8, pages[4], PAGE);
    g_assert_true(g_file_get_contents(file, &state, &len, NULL));
    rec = memmem(state, len, needle, 8 + PAGE);
    g_assert_nonnull(rec);
    rec[7] = 0x7f;
    g_assert_true(g_file_set_contents(file, state, len, NULL));

    /*
     * The stream is all there: the load fails at once and the destination
     * exits, so it waits (defer) until it is told to expect that.
     */
    mig_dest_start(&d, data, "defer", errlog);
    qtest_set_expected_status(d.qts, 1);
    qtest_qmp_send(d.qts, "{'execute': 'migrate-incoming',"
                   " 'arguments': {'uri': %s}}", in);
    mig_refused(NULL, &d, errlog, "unknown record kind", NULL);
    free_pages(pages, MIG_PAGES);
    tm_stop(&t);
    unlink(file);
    rmdir(dir);
}

/* Wait (real time: the main loop serves the pool socket) for a property */
static bool wait_bool(Tm *t, const char *prop, bool want)
{
    gint64 end = g_get_monotonic_time() + 15 * G_USEC_PER_SEC;

    while (qom_get_bool(t, DEV_PATH, prop) != want) {
        if (g_get_monotonic_time() > end) {
            return false;
        }
        g_usleep(20 * 1000);
    }
    return true;
}

static bool wait_u64(Tm *t, const char *prop, uint64_t want)
{
    gint64 end = g_get_monotonic_time() + 15 * G_USEC_PER_SEC;

    while (qom_get_u64(t, DEV_PATH, prop) != want) {
        if (g_get_monotonic_time() > end) {
            return false;
        }
        g_usleep(20 * 1000);
    }
    return true;
}

#define CFG_LIMIT offsetof(struct virtio_tmem_config, limit)

/* Without a pool (and with an unreachable one): the device's own limit */
static void test_pool_standalone(void *obj, void *data, QGuestAllocator *alloc)
{
    g_autofree uint8_t *a = make_page(21);
    Tm t;

    tm_start(&t, obj, alloc);
    g_assert_false(qom_get_bool(&t, DEV_PATH, "pool-connected"));
    g_assert_false(qom_get_bool(&t, BACKEND_PATH, "pool-connected"));
    g_assert_cmpuint(qom_get_u64(&t, DEV_PATH, "pool-limit"), ==, 256 * MiB);
    g_assert_cmpuint(qvirtio_config_readq(t.dev, CFG_LIMIT), ==, 256 * MiB);
    g_assert_cmpuint(tm_put(&t, 1, a), ==, VIRTIO_TMEM_S_OK);
    assert_slot(&t, 1, a);
    qom_set_u64(&t, DEV_PATH, "limit", 8 * MiB);
    qvirtio_wait_config_isr(t.dev, TMEM_TIMEOUT_US);
    g_assert_cmpuint(qom_get_u64(&t, BACKEND_PATH, "pool-limit"), ==,
                     8 * MiB);
    g_assert_cmpuint(qvirtio_config_readq(t.dev, CFG_LIMIT), ==, 8 * MiB);
    /* read-only */
    {
        QDict *resp = qtest_qmp(t.qts, "{'execute': 'qom-set', 'arguments':"
                                " {'path': %s, 'property': 'pool-limit',"
                                " 'value': 1}}", DEV_PATH);

        g_assert(qdict_haskey(resp, "error"));
        qobject_unref(resp);
    }
    g_assert_false(qom_get_bool(&t, DEV_PATH, "pool-connected"));
    tm_stop(&t);
}

/* A bad pool socket path fails realize; other devices are unaffected */
static void test_pool_bad_path(void *obj, void *data, QGuestAllocator *alloc)
{
    g_autofree char *path = g_strnfill(200, 'x');
    QDict *resp, *err;
    Tm t;

    tm_start(&t, obj, alloc);
    resp = qtest_qmp(t.qts, "{'execute': 'device_add', 'arguments':"
                     " {'driver': 'virtio-tmem-pci', 'id': 'tmem9',"
                     " 'pool': %s}}", path);
    g_assert(qdict_haskey(resp, "error"));
    err = qdict_get_qdict(resp, "error");
    g_assert_nonnull(strstr(qdict_get_str(err, "desc"), "pool"));
    qobject_unref(resp);
    assert_alive(&t);
    tm_stop(&t);
}

/*
 * A real vtmemd: lease, cap, daemon gone (lease kept), re-registration.
 * (libqos never reuses descriptors: a queue serves ~80 requests, too few
 * to fill a 4 MiB granule; the cap makes the store refuse instead.)
 */
#define POOL_PAGES 32
static void test_pool_daemon(void *obj, void *data, QGuestAllocator *alloc)
{
    uint8_t *pages[POOL_PAGES];
    g_autofree uint8_t *extra = make_page(2999);
    uint64_t lease, held;
    int i;
    Tm t;

    if (!getenv("VTMEM_QTEST_VTMEMD")) {
        g_test_skip("VTMEM_QTEST_VTMEMD (path of vtmemd) not set");
        return;
    }
    tm_start(&t, obj, alloc);
    g_assert_true(wait_bool(&t, "pool-connected", true));
    /* the whole pool (one granule) is leased to the only VM */
    g_assert_true(wait_u64(&t, "pool-limit", POOL_LIMIT));
    g_assert_cmpuint(qom_get_u64(&t, DEV_PATH, "limit"), ==, 256 * MiB);
    g_assert_cmpuint(qvirtio_config_readq(t.dev, CFG_LIMIT), ==, POOL_LIMIT);

    /* incompressible pages within the lease */
    for (i = 0; i < POOL_PAGES; i++) {
        pages[i] = make_page(3000 + i);
        g_assert_cmpuint(tm_put(&t, i, pages[i]), ==, VIRTIO_TMEM_S_OK);
    }
    held = tm_stat(&t, "memory-held");
    g_assert_cmpuint(held, <=, POOL_LIMIT);
    assert_slot(&t, 0, pages[0]);

    /* the device's limit caps the lease at once */
    qom_set_u64(&t, DEV_PATH, "limit", held);
    g_assert_cmpuint(qom_get_u64(&t, DEV_PATH, "pool-limit"), ==, held);
    g_assert_cmpuint(qvirtio_config_readq(t.dev, CFG_LIMIT), ==, held);
    g_assert_cmpuint(tm_put(&t, POOL_PAGES, extra), ==,
                     VIRTIO_TMEM_S_NOSPACE);
    /*
     * Raised again: vtmemd may have cut the lease to the lower cap
     * meanwhile (its LIMIT races this qom-set), so the limit reaches
     * 1 MiB once the daemon grants it again.
     */
    qom_set_u64(&t, DEV_PATH, "limit", 1 * MiB);
    g_assert_true(wait_u64(&t, "pool-limit", 1 * MiB));
    /*
     * The device reported its counters: the refused put (vtmemd's demand
     * signal: the VM is pressed) and the pages it stores.
     */
    g_assert_true(vtmemd_wait_status(" refusals=1 stored-pages="
                                     G_STRINGIFY(POOL_PAGES) " pressed=1 "));

    /* vtmemd goes away: pages and lease kept */
    vtmemd_stop();
    g_assert_true(wait_bool(&t, "pool-connected", false));
    lease = qom_get_u64(&t, DEV_PATH, "pool-limit");
    g_assert_cmpuint(lease, ==, 1 * MiB);
    assert_slot(&t, 1, pages[1]);
    assert_slot(&t, POOL_PAGES - 1, pages[POOL_PAGES - 1]);

    /* and comes back: the device registers again by itself */
    vtmemd_start();
    g_assert_true(wait_bool(&t, "pool-connected", true));
    qom_set_u64(&t, DEV_PATH, "limit", 256 * MiB);
    g_assert_true(wait_u64(&t, "pool-limit", POOL_LIMIT));
    assert_slot(&t, 0, pages[0]);
    g_assert_cmpuint(tm_put(&t, POOL_PAGES, extra), ==, VIRTIO_TMEM_S_OK);
    free_pages(pages, POOL_PAGES);
    tm_stop(&t);
    vtmemd_cleanup();
}

/* vtmemd started after the VM: standalone first, then the pool's share */
static void test_pool_late(void *obj, void *data, QGuestAllocator *alloc)
{
    uint8_t *pages[8];
    int i;
    Tm t;

    if (!getenv("VTMEM_QTEST_VTMEMD")) {
        g_test_skip("VTMEM_QTEST_VTMEMD (path of vtmemd) not set");
        return;
    }
    tm_start(&t, obj, alloc);
    g_assert_false(qom_get_bool(&t, DEV_PATH, "pool-connected"));
    g_assert_cmpuint(qom_get_u64(&t, DEV_PATH, "pool-limit"), ==, 256 * MiB);
    for (i = 0; i < 8; i++) {
        pages[i] = make_page(4000 + i);
        g_assert_cmpuint(tm_put(&t, i, pages[i]), ==, VIRTIO_TMEM_S_OK);
    }
    vtmemd_start();
    g_assert_true(wait_bool(&t, "pool-connected", true));
    /* the daemon lowers the standalone limit to its share */
    g_assert_true(wait_u64(&t, "pool-limit", POOL_LIMIT));
    g_assert_cmpuint(qvirtio_config_readq(t.dev, CFG_LIMIT), ==, POOL_LIMIT);
    for (i = 0; i < 8; i++) {
        assert_slot(&t, i, pages[i]);
    }
    free_pages(pages, 8);
    tm_stop(&t);
    vtmemd_cleanup();
}

#define PCI_SLOT_HP 0x06

/* Hot-plug and unplug a second device (realize, unrealize, store freed) */
static void test_hotplug(void *obj, void *data, QGuestAllocator *alloc)
{
    QVirtioPCIDevice *dev = obj;
    QTestState *qts = dev->pdev->bus->qts;

    if (dev->pdev->bus->not_hotpluggable) {
        g_test_skip("pci bus does not support hotplug");
        return;
    }
    qtest_qmp_device_add(qts, "virtio-tmem-pci", "tmem1",
                         "{'addr': %s, 'limit': 1048576}",
                         stringify(PCI_SLOT_HP));
    g_assert_cmpuint(qtest_readl(qts, 0), <, UINT32_MAX);   /* alive */
    qpci_unplug_acpi_device_test(qts, "tmem1", PCI_SLOT_HP);
    qos_invalidate_command_line();
}

typedef void (*TmemTestFn)(void *obj, void *data, QGuestAllocator *alloc);

static const struct {
    const char *name;
    TmemTestFn fn;
    const char *limit;
    int kind;
    bool iothread;          /* also run with an IOThread */
    const char *slots;
    bool ioeventfd;         /* also run with ioeventfd=on */
    bool snapshot;
} tmem_tests[] = {
    { "config", test_config },
    { "put-get", test_put_get, .iothread = true, .ioeventfd = true },
    { "invalidate", test_invalidate },
    { "invalidate-range", test_invalidate_range },
    { "invalidate-all", test_invalidate_all },
    { "invalidate-batch", test_invalidate_batch, .iothread = true },
    { "batching-order", test_batching_order, .iothread = true,
      .ioeventfd = true },
    { "framing", test_framing },
    { "limit", test_limit, "128K", .iothread = true },
    { "runtime-limit", test_runtime_limit, .iothread = true },
    { "reset", test_reset, .iothread = true, .ioeventfd = true },
    { "bad-status", test_bad_status, .iothread = true, .ioeventfd = true },
    { "bad-short-header", test_bad_short_header },
    { "bad-no-response", test_bad_broken, NULL, BROKEN_NO_RESP, true },
    { "bad-only-out", test_bad_broken, NULL, BROKEN_ONLY_OUT },
    { "bad-short-response", test_bad_broken, NULL, BROKEN_SHORT_RESP },
    { "bad-huge-in", test_bad_broken, NULL, BROKEN_HUGE_IN },
    { "bad-beyond-ram", test_bad_broken, NULL, BROKEN_BEYOND_RAM, true },
    { "bad-mmio-resp", test_bad_broken, NULL, BROKEN_MMIO_RESP, true },
    { "bad-mmio-hdr", test_bad_broken, NULL, BROKEN_MMIO_HDR, true },
    { "driver-ok", test_driver_ok, .iothread = true },
    { "invalidate-huge", test_invalidate_huge, .iothread = true,
      .slots = "4294967296" },
    { "virtio-status", test_virtio_status },
    { "queue-reset", test_queue_reset, .iothread = true },
    { "stats", test_stats },
    { "compact", test_compact, .iothread = true },
    { "compact-auto", test_compact_auto },
    { "compact-limit", test_compact_limit },
    { "migrate", test_migrate, .iothread = true, .ioeventfd = true },
    { "migrate-tcp", test_migrate_tcp },
    { "migrate-postcopy", test_migrate_postcopy },
    { "migrate-reset", test_migrate_reset, .iothread = true },
    { "savevm", test_savevm, .iothread = true, .snapshot = true },
    { "migrate-file", test_migrate_file, .iothread = true },
    { "migrate-cancel", test_migrate_cancel, .iothread = true },
    { "migrate-slots", test_migrate_slots },
    { "migrate-corrupt", test_migrate_corrupt },
    { "compact-put", test_compact_put, .iothread = true },
    { "pool-standalone", test_pool_standalone, NULL, POOL_NONE },
    { "pool-unreachable", test_pool_standalone, NULL, POOL_UNREACHABLE,
      .iothread = true },
    { "pool-bad-path", test_pool_bad_path },
    { "pool-daemon", test_pool_daemon, NULL, POOL_DAEMON, .iothread = true },
    { "pool-late", test_pool_late, NULL, POOL_LATE },
};

/* How the queue is served: a test name prefix and graph interface each */
enum { SERVE_DEFAULT, SERVE_IOTHREAD, SERVE_IOEVENTFD, SERVE_MODES };
static const char *const serve_prefix[SERVE_MODES] = {
    "", "iothread-", "ioeventfd-",
};
static const char *const serve_interface[SERVE_MODES] = {
    "virtio-tmem", "virtio-tmem-iothread", "virtio-tmem-ioeventfd",
};

/* The arguments of the tests: [serve mode][test] */
static TestArg tmem_test_args[SERVE_MODES][G_N_ELEMENTS(tmem_tests)];

static void register_virtio_tmem_test(void)
{
    int mode, i;

    for (mode = 0; mode < SERVE_MODES; mode++) {
        for (i = 0; i < G_N_ELEMENTS(tmem_tests); i++) {
            TestArg *arg = &tmem_test_args[mode][i];
            QOSGraphTestOptions opts = { .before = tmem_before, .arg = arg };
            g_autofree char *name = NULL;

            if ((mode == SERVE_IOTHREAD && !tmem_tests[i].iothread) ||
                (mode == SERVE_IOEVENTFD && !tmem_tests[i].ioeventfd)) {
                continue;
            }
            arg->limit = tmem_tests[i].limit;
            arg->slots = tmem_tests[i].slots;
            arg->kind = tmem_tests[i].kind;
            arg->iothread = mode == SERVE_IOTHREAD;
            arg->ioeventfd = mode == SERVE_IOEVENTFD;
            arg->snapshot = tmem_tests[i].snapshot;
            arg->pool = g_str_has_prefix(tmem_tests[i].name, "pool-");
            name = g_strdup_printf("%s%s", serve_prefix[mode],
                                   tmem_tests[i].name);
            qos_add_test(name, serve_interface[mode], tmem_tests[i].fn,
                         &opts);
        }
    }
    qos_add_test("hotplug", "virtio-tmem-pci", test_hotplug, NULL);
}

libqos_init(register_virtio_tmem_test);

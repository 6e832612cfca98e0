/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "vtmem-pool-util.h"

#include <errno.h>
#include <glib.h>
#include <string.h>
#include <unistd.h>

bool vtmem_pool_parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;

    if (!s || !*s || (s[0] == '0' && s[1] != '\0')) {
        return false;
    }
    for (; *s; s++) {
        unsigned d;

        if (*s < '0' || *s > '9') {
            return false;
        }
        d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

bool vtmem_pool_parse_size(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    unsigned shift = 0;
    const char *p = s;

    if (!s || *s < '0' || *s > '9') {
        return false;
    }
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');

        if (v > (UINT64_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    switch (*p) {
    case '\0':
        *out = v;
        return true;
    case 'k':
    case 'K':
        shift = 10;
        break;
    case 'm':
    case 'M':
        shift = 20;
        break;
    case 'g':
    case 'G':
        shift = 30;
        break;
    case 't':
    case 'T':
        shift = 40;
        break;
    default:
        return false;
    }
    p++;
    if (*p && strcmp(p, "iB") != 0 && strcmp(p, "B") != 0 &&
        strcmp(p, "b") != 0 && strcmp(p, "ib") != 0) {
        return false;
    }
    if (v > (UINT64_MAX >> shift)) {
        return false;
    }
    *out = v << shift;
    return true;
}

char *vtmem_pool_format_size(uint64_t bytes, char *buf, size_t len)
{
    static const char *const units[] = {
        "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"
    };
    unsigned u = 0;
    double v = (double)bytes;

    while (v >= 1024.0 && u + 1 < G_N_ELEMENTS(units)) {
        v /= 1024.0;
        u++;
    }
    if (u == 0) {
        g_snprintf(buf, len, "%" G_GUINT64_FORMAT " B", bytes);
    } else {
        g_snprintf(buf, len, "%.1f %s", v, units[u]);
    }
    return buf;
}

bool vtmem_pool_uuid_valid(const char *s)
{
    size_t i;

    if (!s || strlen(s) != VTMEM_POOL_UUID_LEN) {
        return false;
    }
    for (i = 0; i < VTMEM_POOL_UUID_LEN; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') {
                return false;
            }
        } else if (!g_ascii_isxdigit(s[i])) {
            return false;
        }
    }
    return true;
}

char **vtmem_pool_split(const char *line, unsigned max_fields,
                        unsigned *n_fields)
{
    GPtrArray *a = g_ptr_array_new();
    const char *p = line;

    if (max_fields == 0 || !*line) {
        goto bad;
    }
    while (true) {
        const char *sp = a->len + 1 < max_fields ? strchr(p, ' ') : NULL;
        size_t flen = sp ? (size_t)(sp - p) : strlen(p);

        if (flen == 0) {
            goto bad;
        }
        g_ptr_array_add(a, g_strndup(p, flen));
        if (!sp) {
            break;
        }
        p = sp + 1;
    }
    if (n_fields) {
        *n_fields = a->len;
    }
    g_ptr_array_add(a, NULL);
    return (char **)g_ptr_array_free(a, FALSE);
bad:
    g_ptr_array_set_free_func(a, g_free);
    g_ptr_array_free(a, TRUE);
    return NULL;
}

ssize_t vtmem_line_reader_fill(VtmemLineReader *r, int fd)
{
    ssize_t n;

    if (r->len >= sizeof(r->buf)) {
        errno = ENOBUFS;
        return -1;
    }
    do {
        n = read(fd, r->buf + r->len, sizeof(r->buf) - r->len);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
        r->len += (size_t)n;
    }
    return n;
}

VtmemLineResult vtmem_line_reader_next(VtmemLineReader *r, char *line,
                                       const char **why)
{
    char *nl = memchr(r->buf, '\n', r->len);
    size_t llen, i;

    if (!nl) {
        if (r->len >= sizeof(r->buf)) {
            *why = "line too long";
            return VTMEM_LINE_ERROR;
        }
        /* Check what is there already so garbage is caught at once. */
        for (i = 0; i < r->len; i++) {
            if ((unsigned char)r->buf[i] < 0x20 ||
                (unsigned char)r->buf[i] > 0x7e) {
                *why = "non-printable byte in line";
                return VTMEM_LINE_ERROR;
            }
        }
        return VTMEM_LINE_NONE;
    }
    llen = (size_t)(nl - r->buf);
    for (i = 0; i < llen; i++) {
        if ((unsigned char)r->buf[i] < 0x20 ||
            (unsigned char)r->buf[i] > 0x7e) {

            *why = "non-printable byte in line";
            return VTMEM_LINE_ERROR;
        }
    }
    if (llen == 0) {
        *why = "empty line";
        return VTMEM_LINE_ERROR;
    }
    memcpy(line, r->buf, llen);
    line[llen] = '\0';
    memmove(r->buf, nl + 1, r->len - llen - 1);
    r->len -= llen + 1;
    return VTMEM_LINE_OK;
}

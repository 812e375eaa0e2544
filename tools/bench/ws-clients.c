/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ws-clients — the measuring end of tools/bench-ws and tools/bench-scale.
 *
 *   ws-clients connect PORT TOKEN PATH N_CLIENTS N_DONE [THREADS] [TIMEOUT_S]
 *       N WebSocket clients of nornd's /ws (Authorization: Bearer TOKEN,
 *       PATH e.g. "/ws?appId=bench"), spread over THREADS epoll loops.
 *       Prints "ready N" once every client got its "subscribed" message,
 *       then reads until every client saw N_DONE deploy.completed/failed
 *       events (or TIMEOUT_S passed).
 *
 *   ws-clients floor N_CLIENTS N_EVENTS FRAME_BYTES [THREADS] [GAP_MS]
 *       The floor: N connected loopback TCP pairs; one writer thread sends
 *       each event frame (FRAME_BYTES of payload, stamped like nornd's
 *       envelope) with one plain write() per socket; the readers are the
 *       same code as above.
 *
 * Both print one line per deploy.step event, "event SEQ EMITTED_US FIRST_US
 * LAST_US COUNT" (CLOCK_REALTIME, µs: the envelope's "time", the first and
 * the last client's receipt, how many clients got it), then "frames N bytes
 * B step_frames S step_bytes SB" (event frames and their payload bytes, all
 * clients together) and, for floor, "writer_cpu_ns NS writes W".
 *
 * Not installed; built by meson for the benchmarks and their smoke test.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 64

typedef struct Conn {
        int fd;
        uint8_t *buf;
        size_t len, cap;
        unsigned done;
        bool subscribed, finished;
} Conn;

typedef struct Rec {
        uint64_t seq;
        int64_t emitted_us, first_us, last_us;
        unsigned count;
} Rec;

typedef struct Worker {
        pthread_t thread;
        int epfd;
        Conn **conns;
        size_t n_conns, n_finished;
        Rec *recs;
        size_t n_recs, cap_recs;
        uint64_t frames, bytes, step_frames, step_bytes;
        int error;
} Worker;

static atomic_uint n_subscribed;
static atomic_bool stop_all;
static unsigned n_done_target = 1;
static int64_t deadline_us;
static bool floor_mode;

static int64_t now_realtime_us(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t thread_cpu_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int fail(const char *what) {
        int r = -errno;

        fprintf(stderr, "ws-clients: %s: %s\n", what, strerror(errno));
        return r;
}

static void format_time(int64_t us, char buf[static 64]) {
        time_t s = (time_t) (us / 1000000);
        struct tm tm;

        gmtime_r(&s, &tm);
        snprintf(buf, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int) (us % 1000000));
}

/* "2026-12-02T15:26:07.123456Z" → µs since the epoch, or -1. */
static int64_t parse_time(const char *p, size_t n) {
        struct tm tm = {};
        int us = 0, k = 0;
        char tmp[40];

        if (n >= sizeof(tmp))
                n = sizeof(tmp) - 1;
        memcpy(tmp, p, n);
        tmp[n] = 0;
        if (sscanf(tmp, "%4d-%2d-%2dT%2d:%2d:%2d.%6dZ%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                   &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &us, &k) != 7 || k == 0)
                return -1;
        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        return (int64_t) timegm(&tm) * 1000000 + us;
}

static bool head_has(const uint8_t *p, size_t n, const char *needle) {
        return memmem(p, n < 128 ? n : 128, needle, strlen(needle)) != NULL;
}

static Rec *worker_rec(Worker *w, uint64_t seq) {
        for (size_t i = w->n_recs; i > 0; i--)
                if (w->recs[i - 1].seq == seq)
                        return &w->recs[i - 1];
        if (w->n_recs == w->cap_recs) {
                size_t cap = w->cap_recs ? 2 * w->cap_recs : 256;
                Rec *r = realloc(w->recs, cap * sizeof(Rec));

                if (!r)
                        return NULL;
                w->recs = r;
                w->cap_recs = cap;
        }
        w->recs[w->n_recs] = (Rec) { .seq = seq, .emitted_us = -1 };
        return &w->recs[w->n_recs++];
}

static void conn_finish(Worker *w, Conn *c) {
        if (c->finished)
                return;
        c->finished = true;
        w->n_finished++;
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
}

static int on_text(Worker *w, Conn *c, const uint8_t *p, size_t n, int64_t now) {
        if (!c->subscribed && head_has(p, n, "\"type\":\"subscribed\"")) {
                c->subscribed = true;
                atomic_fetch_add(&n_subscribed, 1);
                return 0;
        }
        if (n < 8 || memcmp(p, "{\"seq\":", 7) != 0)
                return 0;
        w->frames++;
        w->bytes += n;
        if (head_has(p, n, "\"type\":\"deploy.step\"")) {
                const uint8_t *t = memmem(p, n, "\"time\":\"", 8);
                Rec *r = worker_rec(w, strtoull((const char *) p + 7, NULL, 10));

                if (!r)
                        return -ENOMEM;
                if (r->count++ == 0) {
                        r->emitted_us = t ? parse_time((const char *) t + 8, n - (size_t) (t + 8 - p)) : -1;
                        r->first_us = r->last_us = now;
                } else {
                        r->first_us = now < r->first_us ? now : r->first_us;
                        r->last_us = now > r->last_us ? now : r->last_us;
                }
                w->step_frames++;
                w->step_bytes += n;
        } else if (head_has(p, n, "\"type\":\"deploy.completed\"") ||
                   head_has(p, n, "\"type\":\"deploy.failed\"")) {
                if (++c->done >= n_done_target)
                        conn_finish(w, c);
        }
        return 0;
}

static void send_pong(Conn *c, const uint8_t *p, size_t n) {
        uint8_t f[2 + 4 + 125];

        if (n > 125)
                return;
        f[0] = 0x8a;
        f[1] = (uint8_t) (0x80 | n);
        memset(f + 2, 0, 4); /* mask key 0: the payload stays as it is */
        memcpy(f + 6, p, n);
        (void) !write(c->fd, f, 6 + n);
}

/* Handles the complete frames at the start of c->buf; keeps the rest. */
static int conn_parse(Worker *w, Conn *c, int64_t now) {
        size_t off = 0;
        int r = 0;

        while (!c->finished && c->len - off >= 2) {
                const uint8_t *b = c->buf + off;
                uint64_t n = b[1] & 0x7f;
                size_t h = 2;

                if (n == 126) {
                        if (c->len - off < 4)
                                break;
                        n = (uint64_t) b[2] << 8 | b[3];
                        h = 4;
                } else if (n == 127) {
                        if (c->len - off < 10)
                                break;
                        n = 0;
                        for (int i = 0; i < 8; i++)
                                n = n << 8 | b[2 + i];
                        h = 10;
                }
                if (c->len - off - h < n)
                        break;
                switch (b[0] & 0x0f) {
                case 1:
                        r = on_text(w, c, b + h, (size_t) n, now);
                        break;
                case 8:
                        conn_finish(w, c);
                        break;
                case 9:
                        send_pong(c, b + h, (size_t) n);
                        break;
                }
                if (r < 0)
                        return r;
                off += h + (size_t) n;
        }
        memmove(c->buf, c->buf + off, c->len - off);
        c->len -= off;
        return 0;
}

static int conn_read(Worker *w, Conn *c) {
        for (;;) {
                ssize_t k;

                if (c->cap - c->len < 4096) {
                        uint8_t *b = realloc(c->buf, c->cap * 2);

                        if (!b)
                                return -ENOMEM;
                        c->buf = b;
                        c->cap *= 2;
                }
                k = read(c->fd, c->buf + c->len, c->cap - c->len);
                if (k < 0 && (errno == EAGAIN || errno == EINTR))
                        return 0;
                if (k <= 0) {
                        conn_finish(w, c);
                        return 0;
                }
                c->len += (size_t) k;
                k = conn_parse(w, c, now_realtime_us());
                if (k < 0 || c->finished)
                        return (int) k;
        }
}

static void *worker_run(void *userdata) {
        Worker *w = userdata;
        struct epoll_event evs[256];

        for (size_t i = 0; i < w->n_conns; i++) {
                struct epoll_event ev = { .events = EPOLLIN, .data.ptr = w->conns[i] };

                if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->conns[i]->fd, &ev) < 0) {
                        w->error = fail("epoll_ctl");
                        return NULL;
                }
                /* Bytes that came with the handshake answer. */
                if (conn_parse(w, w->conns[i], now_realtime_us()) < 0) {
                        w->error = -ENOMEM;
                        return NULL;
                }
        }
        while (w->n_finished < w->n_conns && !atomic_load(&stop_all) && now_realtime_us() < deadline_us) {
                int k = epoll_wait(w->epfd, evs, 256, 200);

                if (k < 0 && errno != EINTR) {
                        w->error = fail("epoll_wait");
                        return NULL;
                }
                for (int i = 0; i < k; i++)
                        if (conn_read(w, evs[i].data.ptr) < 0) {
                                w->error = -ENOMEM;
                                return NULL;
                        }
        }
        return NULL;
}

static int conn_new(int fd, Conn **ret) {
        Conn *c = calloc(1, sizeof(Conn));

        if (!c)
                return -ENOMEM;
        c->cap = 16384;
        c->buf = malloc(c->cap);
        if (!c->buf) {
                free(c);
                return -ENOMEM;
        }
        c->fd = fd;
        *ret = c;
        return 0;
}

static int tcp_connect(uint16_t port) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
                return fail("socket");
        if (connect(fd, (struct sockaddr *) &a, sizeof(a)) < 0) {
                int r = fail("connect");

                close(fd);
                return r;
        }
        return fd;
}

/* The upgrade, blocking; the bytes after the answer's head stay in the Conn. */
static int ws_handshake(uint16_t port, const char *token, const char *path, Conn **ret) {
        char req[1024], *end;
        Conn *c;
        int fd, r, n;

        fd = tcp_connect(port);
        if (fd < 0)
                return fd;
        r = conn_new(fd, &c);
        if (r < 0) {
                close(fd);
                return r;
        }
        n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                     "Authorization: Bearer %s\r\n\r\n", path, token);
        if (n < 0 || (size_t) n >= sizeof(req) || write(fd, req, (size_t) n) != n) {
                r = fail("handshake request");
                goto fail;
        }
        for (;;) {
                ssize_t k = read(fd, c->buf + c->len, c->cap - c->len - 1);

                if (k <= 0) {
                        fprintf(stderr, "ws-clients: connection closed during the handshake\n");
                        r = -ECONNRESET;
                        goto fail;
                }
                c->len += (size_t) k;
                c->buf[c->len] = 0;
                end = strstr((char *) c->buf, "\r\n\r\n");
                if (end)
                        break;
                if (c->len + 1 >= c->cap) {
                        r = -E2BIG;
                        goto fail;
                }
        }
        if (strncmp((char *) c->buf, "HTTP/1.1 101", 12) != 0) {
                fprintf(stderr, "ws-clients: upgrade refused: %.*s\n", (int) strcspn((char *) c->buf, "\r"),
                        (char *) c->buf);
                r = -EPROTO;
                goto fail;
        }
        end += 4;
        c->len -= (size_t) (end - (char *) c->buf);
        memmove(c->buf, end, c->len);
        if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
                r = fail("fcntl");
                goto fail;
        }
        *ret = c;
        return 0;
fail:
        close(fd);
        free(c->buf);
        free(c);
        return r;
}

static int rec_cmp(const void *a, const void *b) {
        const Rec *x = a, *y = b;

        return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Merges the workers' records per seq and prints them. */
static int report(Worker *ws, unsigned n_threads) {
        size_t total = 0, k = 0;
        uint64_t frames = 0, bytes = 0, step_frames = 0, step_bytes = 0;
        Rec *all;

        for (unsigned i = 0; i < n_threads; i++) {
                total += ws[i].n_recs;
                frames += ws[i].frames;
                bytes += ws[i].bytes;
                step_frames += ws[i].step_frames;
                step_bytes += ws[i].step_bytes;
        }
        all = calloc(total + 1, sizeof(Rec));
        if (!all)
                return -ENOMEM;
        for (unsigned i = 0; i < n_threads; i++) {
                if (ws[i].n_recs)
                        memcpy(all + k, ws[i].recs, ws[i].n_recs * sizeof(Rec));
                k += ws[i].n_recs;
        }
        qsort(all, total, sizeof(Rec), rec_cmp);
        for (size_t i = 0; i < total;) {
                Rec m = all[i];

                for (i++; i < total && all[i].seq == m.seq; i++) {
                        m.first_us = all[i].first_us < m.first_us ? all[i].first_us : m.first_us;
                        m.last_us = all[i].last_us > m.last_us ? all[i].last_us : m.last_us;
                        m.count += all[i].count;
                        if (m.emitted_us < 0)
                                m.emitted_us = all[i].emitted_us;
                }
                printf("event %llu %lld %lld %lld %u\n", (unsigned long long) m.seq, (long long) m.emitted_us,
                       (long long) m.first_us, (long long) m.last_us, m.count);
        }
        printf("frames %llu bytes %llu step_frames %llu step_bytes %llu\n", (unsigned long long) frames,
               (unsigned long long) bytes, (unsigned long long) step_frames, (unsigned long long) step_bytes);
        free(all);
        return 0;
}

static void raise_nofile(void) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                (void) setrlimit(RLIMIT_NOFILE, &rl);
        }
}

typedef struct Floor {
        int *fds;
        size_t n;
        unsigned n_events, gap_ms;
        size_t frame_bytes;
        int64_t cpu_ns;
        uint64_t writes;
        int error;
} Floor;

/* One event's frame: the shape of nornd's envelope, padded to frame_bytes. */
static size_t floor_frame(uint8_t *f, size_t cap, uint64_t seq, const char *type, size_t want) {
        char when[64], head[192];
        size_t n, h, pad;

        format_time(now_realtime_us(), when);
        n = (size_t) snprintf(head, sizeof(head),
                              "{\"seq\":%llu,\"type\":\"%s\",\"appId\":\"bench\",\"time\":\"%s\",\"payload\":{\"x\":\"",
                              (unsigned long long) seq, type, when);
        pad = want > n + 3 ? want - n - 3 : 0;
        if (n + pad + 3 + 4 > cap)
                pad = cap - n - 3 - 4;
        n += pad + 3;
        h = n < 126 ? 2 : 4;
        f[0] = 0x81;
        if (h == 2)
                f[1] = (uint8_t) n;
        else {
                f[1] = 126;
                f[2] = (uint8_t) (n >> 8);
                f[3] = (uint8_t) n;
        }
        memcpy(f + h, head, n - pad - 3);
        memset(f + h + n - pad - 3, 'x', pad);
        memcpy(f + h + n - 3, "\"}}", 3);
        return h + n;
}

static int floor_write_all(Floor *fl, const uint8_t *f, size_t n) {
        int64_t t = thread_cpu_ns();

        for (size_t i = 0; i < fl->n; i++)
                if (write(fl->fds[i], f, n) != (ssize_t) n)
                        return fail("write");
        fl->cpu_ns += thread_cpu_ns() - t;
        fl->writes += fl->n;
        return 0;
}

static void *floor_writer(void *userdata) {
        Floor *fl = userdata;
        uint8_t f[65536];
        struct timespec gap = { .tv_sec = fl->gap_ms / 1000, .tv_nsec = (long) (fl->gap_ms % 1000) * 1000000 };

        for (unsigned e = 1; e <= fl->n_events + 1 && !atomic_load(&stop_all); e++) {
                bool last = e > fl->n_events;
                size_t n = floor_frame(f, sizeof(f), e, last ? "deploy.completed" : "deploy.step",
                                       last ? 100 : fl->frame_bytes);
                int r = floor_write_all(fl, f, n);

                if (r < 0) {
                        fl->error = r;
                        return NULL;
                }
                nanosleep(&gap, NULL);
        }
        return NULL;
}

/* n loopback pairs: the reading ends go to ret_conns, the writing ends to fl. */
static int floor_setup(size_t n, Conn **conns, Floor *fl) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        int one = 1, lfd, r = 0;

        lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (lfd < 0)
                return fail("socket");
        if (bind(lfd, (struct sockaddr *) &a, sizeof(a)) < 0 || listen(lfd, 128) < 0 ||
            getsockname(lfd, (struct sockaddr *) &a, &len) < 0) {
                r = fail("listen");
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                int cfd = tcp_connect(ntohs(a.sin_port)), sfd;

                if (cfd < 0) {
                        r = cfd;
                        goto out;
                }
                sfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                if (sfd < 0) {
                        close(cfd);
                        r = fail("accept");
                        goto out;
                }
                /* As libwebsockets does on its sockets. */
                (void) setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                fl->fds[i] = sfd;
                if (fcntl(cfd, F_SETFL, O_NONBLOCK) < 0 || conn_new(cfd, &conns[i]) < 0) {
                        r = fail("client socket");
                        goto out;
                }
                conns[i]->subscribed = true;
        }
out:
        close(lfd);
        return r;
}

static int usage(void) {
        fprintf(stderr, "usage: ws-clients connect PORT TOKEN PATH N_CLIENTS N_DONE [THREADS] [TIMEOUT_S]\n"
                        "       ws-clients floor N_CLIENTS N_EVENTS FRAME_BYTES [THREADS] [GAP_MS]\n");
        return 2;
}

int main(int argc, char *argv[]) {
        static Worker ws[MAX_THREADS];
        unsigned n_threads = 2, timeout_s = 600;
        Floor fl = { .gap_ms = 10 };
        pthread_t writer;
        Conn **conns;
        size_t n;
        int r = 0;

        if (argc < 5)
                return usage();
        floor_mode = strcmp(argv[1], "floor") == 0;
        if (!floor_mode && (strcmp(argv[1], "connect") != 0 || argc < 7))
                return usage();
        n = strtoul(floor_mode ? argv[2] : argv[5], NULL, 10);
        if (floor_mode) {
                fl.n_events = (unsigned) strtoul(argv[3], NULL, 10);
                fl.frame_bytes = strtoul(argv[4], NULL, 10);
                if (argc > 5)
                        n_threads = (unsigned) strtoul(argv[5], NULL, 10);
                if (argc > 6)
                        fl.gap_ms = (unsigned) strtoul(argv[6], NULL, 10);
        } else {
                n_done_target = (unsigned) strtoul(argv[6], NULL, 10);
                if (argc > 7)
                        n_threads = (unsigned) strtoul(argv[7], NULL, 10);
                if (argc > 8)
                        timeout_s = (unsigned) strtoul(argv[8], NULL, 10);
        }
        if (n == 0 || n_threads == 0 || n_threads > MAX_THREADS)
                return usage();
        if (n_threads > n)
                n_threads = (unsigned) n;
        raise_nofile();
        deadline_us = now_realtime_us() + (int64_t) timeout_s * 1000000;

        conns = calloc(n, sizeof(Conn *));
        fl.fds = calloc(n, sizeof(int));
        if (!conns || !fl.fds)
                return 1;
        fl.n = n;
        if (floor_mode)
                r = floor_setup(n, conns, &fl);
        else
                for (size_t i = 0; i < n && r >= 0; i++)
                        r = ws_handshake((uint16_t) atoi(argv[2]), argv[3], argv[4], &conns[i]);
        if (r < 0) {    /* e.g. a refused token: free what was made, for LeakSanitizer's sake */
                for (size_t i = 0; i < n; i++)
                        if (conns[i]) {
                                close(conns[i]->fd);
                                free(conns[i]->buf);
                                free(conns[i]);
                        }
                free(conns);
                free(fl.fds);
                return 1;
        }

        for (unsigned t = 0; t < n_threads; t++) {
                ws[t].epfd = epoll_create1(EPOLL_CLOEXEC);
                ws[t].conns = calloc(n / n_threads + 1, sizeof(Conn *));
                if (ws[t].epfd < 0 || !ws[t].conns)
                        return 1;
        }
        for (size_t i = 0; i < n; i++) {
                Worker *w = &ws[i % n_threads];

                w->conns[w->n_conns++] = conns[i];
        }
        for (unsigned t = 0; t < n_threads; t++)
                if (pthread_create(&ws[t].thread, NULL, worker_run, &ws[t]) != 0)
                        return 1;

        if (floor_mode) {
                if (pthread_create(&writer, NULL, floor_writer, &fl) != 0)
                        return 1;
        } else {
                /* Live events reach a client only once it is subscribed. */
                while (atomic_load(&n_subscribed) < n && now_realtime_us() < deadline_us)
                        usleep(1000);
                printf("ready %u\n", atomic_load(&n_subscribed));
                fflush(stdout);
        }

        for (unsigned t = 0; t < n_threads; t++) {
                pthread_join(ws[t].thread, NULL);
                if (ws[t].error < 0)
                        r = ws[t].error;
        }
        if (floor_mode) {
                atomic_store(&stop_all, true);
                pthread_join(writer, NULL);
                if (fl.error < 0)
                        r = fl.error;
        }
        if (report(ws, n_threads) < 0)
                return 1;
        if (floor_mode)
                printf("writer_cpu_ns %lld writes %llu\n", (long long) fl.cpu_ns, (unsigned long long) fl.writes);
        for (size_t i = 0; i < n; i++) {
                close(conns[i]->fd);
                free(conns[i]->buf);
                free(conns[i]);
                if (floor_mode)
                        close(fl.fds[i]);
        }
        for (unsigned t = 0; t < n_threads; t++) {
                close(ws[t].epfd);
                free(ws[t].conns);
        }
        free(conns);
        free(fl.fds);
        return r < 0 ? 1 : 0;
}

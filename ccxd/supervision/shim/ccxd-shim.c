/*
 * ccxd-shim: the light parent of one ccxd job (see ccxd/supervision/adopt.py).
 *
 * It starts the job in its own session, reads the job's stdout and stderr and
 * writes them to the job's spool (data file + 13-byte index records, the format
 * of ccxd/output/spool.py), and records the job's exit status in a file.  Nothing
 * depends on a pipe to the daemon, so a daemon may die and a new one adopt the
 * job: the output keeps flowing to disk and the exit status is not lost.
 *
 *   ccxd-shim DATA_PATH INDEX_PATH REPORT_FD EXIT_PATH CHUNK LIMIT CGROUP MARKER -- ARGV...
 *
 * DATA_PATH, INDEX_PATH: the spool files, created (data first, so an index that
 *   exists has its data file) when the job first writes: a job that writes
 *   nothing costs no files, and creating a file is the dearest part of starting
 *   a job on ext4 with many recent deletes.  If they cannot be created, the
 *   output goes to the overflow pipe as past a cut.
 * REPORT_FD: gets "P <pid>\n" once the job was exec'd, or "E <errno> <stage>\n"
 *   (stage: exec, cgroup or shim) if it could not be, then is closed.
 * EXIT_PATH: written (atomically, by rename) as "<code> -\n" or "- <signal>\n"
 *   when the job's leader exits.
 * CHUNK: largest chunk; chunks never split a UTF-8 character (like
 *   ccxd/output/chunker.py).  LIMIT: spool bytes; past it (or when a write
 *   fails) a record with stream 255 marks the cut, and later chunks go as frames
 *   (stream byte, 4-byte little-endian length, data) to stdout, the overflow
 *   pipe to the daemon; stream 254 carries the exit status there too.
 * CGROUP: cgroup.procs files, one per line (cgroup v1 has one per hierarchy),
 *   the job joins between fork and exec (so none of its processes ever runs
 *   outside its group; the shim itself stays out), or "-".
 * MARKER: NAME=VALUE put in the job's environment only (CCXD_JOB_ID=<job>: the
 *   shim is not one of the job's processes), or "-".
 *
 * A wake-up that read at least 4 KiB, or that read output within 1 ms of the
 * last one that did, is followed by a pause of 0.3 ms (cut short by any signal)
 * before the next read: a busy writer's output gathers in the pipe, so chunks
 * come out near CHUNK bytes instead of the writer's last few kilobytes, and the
 * shim, the daemon and its clients wake a tenth as often per megabyte.  A job
 * that writes a little now and then is never held back.
 *
 * The shim is a child subreaper, so processes the job orphans stay below it.
 * It exits once the leader has exited, both pipes are closed and no child is
 * left; SIGTERM means "stop waiting for the pipes" (something outside the job
 * holds them).
 *
 *   ccxd-shim --server
 *
 * Spawn server (see ccxd/supervision/shimserver.py): fd 0 is a SOCK_SEQPACKET
 * socket to the daemon.  Each request is one message: NUL-terminated fields
 * CWD, ENV_COUNT, ENV..., then the shim's own arguments as above (REPORT_FD
 * given as 3), with SCM_RIGHTS descriptors: the overflow pipe, the report pipe
 * and optionally stdin.  The server forks; the child becomes that job's shim
 * without an exec (stdin, stdout = overflow pipe, stderr = /dev/null, 3 = report
 * pipe, its own session, CWD, exactly ENV).  The reply, in request order, is
 * "P <pid>" or "E <errno>" (the daemon learns of the shim's end from the end of
 * file on its overflow pipe, so no pidfd travels with it).  A daemon
 * blocked in vfork/exec of a shim per job on a busy machine waited for the
 * scheduler for most of a millisecond; a write to this socket does not wait.
 * The server exits when the daemon closes the socket; shims already started
 * run on.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define READ_MAX (1024 * 1024)
#define DEFAULT_PIPE 65536
#define RECORD 13
#define CUT_STREAM 255
#define EXIT_STREAM 254
/* Output gathering (see the main loop): a wake-up that read at least
 * COALESCE_MIN bytes, or read output less than COALESCE_HOT_NS after the last
 * one that did, waits COALESCE_NS before the next read. */
#ifndef COALESCE_MIN
#define COALESCE_MIN 4096
#endif
#ifndef COALESCE_NS
#define COALESCE_NS 300000
#endif
#define COALESCE_HOT_NS 1000000

static int data_fd = -1, index_fd = -1;
static const char *data_path, *index_path;
static uint64_t size_written;     /* bytes in the data file */
static uint64_t limit;
static size_t chunk_max;
static int cut;

/* Gathered writes of one read: data, then the index records that point at it. */
static unsigned char *wbuf;
static size_t wlen;
static unsigned char *ibuf;
static size_t ilen;

static unsigned char *obuf, *fbuf; /* overflow frames: after a cut, of a failed batch */
static size_t olen;
static uint64_t batch_start; /* spool offset of wbuf[0] */
static int overflow_ok = 1;
static unsigned char pending[2][4];
static size_t pending_len[2];
static unsigned char rbuf[READ_MAX + 4];
static int pipe_grown[2]; /* F_SETPIPE_SZ done: only for a writer that filled the pipe */
static size_t round_bytes; /* read from the job's pipes since the last poll */

static int write_all(int fd, const unsigned char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void put_record(uint64_t offset, uint32_t length, unsigned char stream) {
    unsigned char *r = ibuf + ilen;
    for (int i = 0; i < 8; i++) r[i] = (unsigned char)(offset >> (8 * i));
    for (int i = 0; i < 4; i++) r[8 + i] = (unsigned char)(length >> (8 * i));
    r[12] = stream;
    ilen += RECORD;
}

/* Past a cut, chunks go as frames (stream, length, data) to the overflow pipe on
 * stdout: the daemon that started the shim keeps them in memory for live
 * subscribers.  With no daemon there (EPIPE) they are dropped. */
static void frame(unsigned char *buf, size_t *len, int stream, const unsigned char *p, size_t n) {
    buf[*len] = (unsigned char)stream;
    for (int i = 0; i < 4; i++) buf[*len + 1 + i] = (unsigned char)(n >> (8 * i));
    memcpy(buf + *len + 5, p, n);
    *len += 5 + n;
}

static void send_overflow(const unsigned char *p, size_t n) {
    if (n && overflow_ok && write_all(1, p, n) < 0) overflow_ok = 0;
}

/* Bytes of p written to fd: n, or fewer when a write failed (errno set). */
static size_t write_some(int fd, const unsigned char *p, size_t n) {
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        if (w < 0) {
            if (errno == EINTR) continue;
            break;
        }
        done += (size_t)w;
    }
    return done;
}

/* Blocks of the data file are reserved ahead of the writes (FALLOC_FL_KEEP_SIZE:
 * the size readers see does not change) once it holds PREALLOC_MIN bytes, as
 * much again as it holds up to PREALLOC_MAX at a time: ext4 then allocates
 * them in one go instead of one delayed allocation per page, about 40% of the
 * write path's system time.  What the job did not use is given back at the end. */
#define PREALLOC_MIN (1u << 20)
#define PREALLOC_MAX (16u << 20)
static uint64_t reserved; /* data file bytes reserved so far */
static int reserve_off;   /* fallocate failed (unsupported, disk full): stop trying */

static void reserve(uint64_t end) {
    if (reserve_off || end <= reserved || end < PREALLOC_MIN) return;
    uint64_t ahead = end < PREALLOC_MAX ? end : PREALLOC_MAX;
    if (end + ahead > limit) ahead = limit > end ? limit - end : 0;
    if (fallocate(data_fd, FALLOC_FL_KEEP_SIZE, (off_t)reserved, (off_t)(end + ahead - reserved)) == 0)
        reserved = end + ahead;
    else
        reserve_off = 1;
}

/* Give back the reserved blocks past the data's end (truncating to its own size frees them). */
static void unreserve(void) {
    struct stat st;
    if (reserved && data_fd >= 0 && fstat(data_fd, &st) == 0 && (uint64_t)st.st_size < reserved)
        ftruncate(data_fd, st.st_size);
}

static int open_spool(void) {
    int flags = O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC;
    if (data_fd < 0) data_fd = open(data_path, flags, 0600);
    if (data_fd >= 0 && index_fd < 0) index_fd = open(index_path, flags, 0600);
    return data_fd >= 0 && index_fd >= 0;
}

static void flush_out(void) {
    /* Data before index: a record never points at bytes that are not there. */
    size_t from = ilen; /* first record the daemon will not find in the index */
    if (wlen && data_fd >= 0) reserve(size_written);
    if ((wlen || ilen) && index_fd < 0 && !open_spool())
        from = 0; /* no spool: this batch goes to the overflow */
    else if (wlen && write_some(data_fd, wbuf, wlen) < wlen)
        from = 0; /* the disk is full (or failing): none of this batch is in the spool */
    else if (ilen)
        from = write_some(index_fd, ibuf, ilen) / RECORD * RECORD;
    if (from < ilen) {
        /* This batch's chunks the spool lacks go to the overflow instead. */
        size_t flen = 0;
        for (size_t r = from; r < ilen; r += RECORD) {
            uint64_t off = 0;
            uint32_t len = 0;
            for (int i = 0; i < 8; i++) off |= (uint64_t)ibuf[r + i] << (8 * i);
            for (int i = 0; i < 4; i++) len |= (uint32_t)ibuf[r + 8 + i] << (8 * i);
            if (ibuf[r + 12] == CUT_STREAM) continue;
            frame(fbuf, &flen, ibuf[r + 12], wbuf + (off - batch_start), len);
        }
        cut = 1;
        send_overflow(fbuf, flen);
    }
    wlen = ilen = 0;
    batch_start = size_written;
    send_overflow(obuf, olen);
    olen = 0;
}

static void emit(int stream, const unsigned char *p, size_t n) {
    if (!cut && size_written + n > limit) {
        put_record(size_written, 0, CUT_STREAM);
        cut = 1;
    }
    if (cut) {
        frame(obuf, &olen, stream, p, n);
        return;
    }
    memcpy(wbuf + wlen, p, n);
    wlen += n;
    put_record(size_written, (uint32_t)n, (unsigned char)stream);
    size_written += n;
}

/* The output buffers, made when the job first writes: a job that writes nothing
 * costs no mappings (four of a megabyte each, made and torn down per job). */
static int have_buffers(void) {
    static int failed;
    if (wbuf) return 1;
    if (failed) return 0;
    wbuf = malloc(READ_MAX + 4);
    /* Frames add 5 bytes per chunk of at least 1021 bytes. */
    obuf = malloc(READ_MAX + 4 + 5 * ((READ_MAX + 4) / 1000 + 8));
    fbuf = malloc(READ_MAX + 4 + 5 * ((READ_MAX + 4) / 1000 + 8));
    /* Chunks hold at least chunk_max - 3 >= 1021 bytes, except the last of a read. */
    ibuf = malloc(RECORD * ((READ_MAX + 4) / 1000 + 8));
    if (wbuf && obuf && fbuf && ibuf) return 1;
    free(wbuf);
    free(obuf);
    free(fbuf);
    free(ibuf);
    wbuf = obuf = fbuf = ibuf = NULL;
    failed = 1; /* out of memory: the job's output is drained and dropped, the job never blocks */
    return 0;
}

static int is_cont(unsigned char b) { return (b & 0xC0) == 0x80; }

static size_t seq_len(unsigned char lead) {
    if (lead < 0xC0) return 1;
    if (lead < 0xE0) return 2;
    if (lead < 0xF0) return 3;
    if (lead < 0xF8) return 4;
    return 1;
}

/* Length of buf without a trailing, incomplete UTF-8 sequence. */
static size_t complete_length(const unsigned char *buf, size_t n) {
    for (size_t back = 1; back <= 4 && back <= n; back++) {
        unsigned char b = buf[n - back];
        if (is_cont(b)) continue;
        return seq_len(b) > back ? n - back : n;
    }
    return n;
}

/* Split into chunks of at most chunk_max bytes at character boundaries. */
static void split(int stream, const unsigned char *buf, size_t n) {
    size_t start = 0;
    while (n - start > chunk_max) {
        size_t end = start + chunk_max, back = 0;
        while (back < 3 && is_cont(buf[end - back])) back++;
        if (back < 3 || !is_cont(buf[end - back])) end -= back;
        emit(stream, buf + start, end - start);
        start = end;
    }
    if (n > start) emit(stream, buf + start, n - start);
}

/* Read what the pipe holds; return 0 at end of file. */
static int drain(int fd, int stream) {
    for (;;) {
        size_t held = pending_len[stream];
        memcpy(rbuf, pending[stream], held);
        ssize_t n = read(fd, rbuf + held, READ_MAX);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return 1;
            n = 0;
        }
        if (n == 0) {
            if (held) split(stream, rbuf, held);
            pending_len[stream] = 0;
            flush_out();
            return 0;
        }
        if (!have_buffers()) {
            pending_len[stream] = 0;
            if ((size_t)n < READ_MAX) return 1;
            continue;
        }
        if (!pipe_grown[stream] && (size_t)n >= DEFAULT_PIPE) {
            /* A writer that fills the default pipe gets a bigger one: fewer wake-ups per megabyte. */
            pipe_grown[stream] = 1;
            fcntl(fd, F_SETPIPE_SZ, READ_MAX);
        }
        round_bytes += (size_t)n;
        size_t total = held + (size_t)n;
        size_t keep = complete_length(rbuf, total);
        pending_len[stream] = total - keep;
        memcpy(pending[stream], rbuf + keep, total - keep);
        if (keep) split(stream, rbuf, keep);
        flush_out();
        if ((size_t)n < READ_MAX) return 1;
    }
}

static void write_exit(const char *path, int status) {
    char tmp[4096], text[64];
    int len;
    if (WIFSIGNALED(status))
        len = snprintf(text, sizeof text, "- %d\n", WTERMSIG(status));
    else
        len = snprintf(text, sizeof text, "%d -\n", WEXITSTATUS(status));
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return;
    int ok = write_all(fd, (unsigned char *)text, (size_t)len) == 0;
    close(fd);
    if (ok) rename(tmp, path);
}

static int shim_main(int argc, char **argv) {
    if (argc < 11 || strcmp(argv[9], "--") != 0) {
        fprintf(stderr, "usage: ccxd-shim DATA_PATH INDEX_PATH REPORT_FD EXIT_PATH CHUNK LIMIT CGROUP MARKER -- ARGV...\n");
        return 2;
    }
    data_path = argv[1];
    index_path = argv[2];
    int report_fd = atoi(argv[3]);
    const char *exit_path = argv[4];
    chunk_max = (size_t)strtoull(argv[5], NULL, 10);
    limit = strtoull(argv[6], NULL, 10);
    if (chunk_max < 1024 || chunk_max > READ_MAX) chunk_max = 65536;
    char *cgroup = strcmp(argv[7], "-") ? argv[7] : NULL;
    char *marker = strcmp(argv[8], "-") ? argv[8] : NULL;
    char **job_argv = argv + 10;
    size_written = batch_start = 0;
    signal(SIGPIPE, SIG_IGN); /* no daemon on the overflow pipe: drop, do not die */
    fcntl(report_fd, F_SETFD, FD_CLOEXEC);
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);

    sigset_t mask, old;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, &old);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC) || sfd < 0) {
        dprintf(report_fd, "E %d shim\n", errno);
        return 127;
    }
    /* Joined files and environment are made here: the vforked child only makes system calls. */
    char *cg_files[64];
    size_t ncg = 0;
    for (char *file = cgroup; file && *file && ncg < 63;) {
        char *next = strchr(file, '\n');
        if (next) *next++ = '\0';
        cg_files[ncg++] = file;
        file = next;
    }
    cg_files[ncg] = NULL;
    char **job_env = environ;
    if (marker) {
        size_t envc = 0;
        while (environ[envc]) envc++;
        job_env = malloc((envc + 2) * sizeof *job_env);
        if (!job_env) {
            dprintf(report_fd, "E %d shim\n", ENOMEM);
            return 127;
        }
        memcpy(job_env, environ, envc * sizeof *job_env);
        job_env[envc] = marker;
        job_env[envc + 1] = NULL;
    }

    /* vfork: the job's exec costs no copy of the shim's page tables, and the
     * shim resumes once the job has exec'd (or failed to, saying why below). */
    static volatile int failed[2]; /* errno, stage: 0 exec, 1 joining the cgroup */
    failed[0] = 0;
    pid_t pid = vfork();
    if (pid < 0) {
        dprintf(report_fd, "E %d shim\n", errno);
        return 127;
    }
    if (pid == 0) {
        setsid();
        for (size_t i = 0; i < ncg; i++) {
            int cg = open(cg_files[i], O_WRONLY | O_CLOEXEC);
            if (cg < 0 || write(cg, "0\n", 2) != 2) {
                failed[1] = 1;
                failed[0] = errno ? errno : EIO;
                _exit(127);
            }
            close(cg);
        }
        signal(SIGPIPE, SIG_DFL);
        dup2(out[1], 1);
        dup2(err[1], 2);
        sigprocmask(SIG_SETMASK, &old, NULL);
        execvpe(job_argv[0], job_argv, job_env);
        failed[1] = 0;
        failed[0] = errno ? errno : ENOEXEC;
        _exit(127);
    }
    if (job_env != environ) free(job_env);
    close(out[1]);
    close(err[1]);
    if (failed[0]) {
        int status;
        waitpid(pid, &status, 0);
        dprintf(report_fd, "E %d %s\n", failed[0], failed[1] ? "cgroup" : "exec");
        return 127;
    }
    dprintf(report_fd, "P %d\n", (int)pid);
    close(report_fd);

    fcntl(out[0], F_SETFL, O_NONBLOCK);
    fcntl(err[0], F_SETFL, O_NONBLOCK);
    int fds[2] = {out[0], err[0]};
    int leader_done = 0, children = 1, stop_pipes = 0;
    int64_t last_data = INT64_MIN / 2; /* CLOCK_MONOTONIC ns of the last wake-up that read output */
    for (;;) {
        if (stop_pipes) {
            for (int s = 0; s < 2; s++)
                if (fds[s] >= 0) {
                    drain(fds[s], s);
                    if (pending_len[s]) {
                        split(s, pending[s], pending_len[s]);
                        pending_len[s] = 0;
                        flush_out();
                    }
                    close(fds[s]);
                    fds[s] = -1;
                }
        }
        if (leader_done && fds[0] < 0 && fds[1] < 0 && !children) break;
        if (round_bytes && !stop_pipes) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            int64_t at = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
            int hot = round_bytes >= COALESCE_MIN || at - last_data < COALESCE_HOT_NS;
            last_data = at;
            if (hot) {
                /* A bulk writer: let its output gather for a moment, so each wake-up
                 * takes in tens of kilobytes instead of the writer's last few: fewer
                 * chunks, system calls and wake-ups per megabyte here, in the daemon
                 * and in its clients.  A signal (the leader's end, a stop) cuts it short. */
                struct pollfd sp = {sfd, POLLIN, 0};
                struct timespec pause = {0, COALESCE_NS};
                ppoll(&sp, 1, &pause, NULL);
            }
        }
        round_bytes = 0;
        struct pollfd p[3] = {
            {fds[0], POLLIN, 0}, {fds[1], POLLIN, 0}, {sfd, POLLIN, 0}};
        if (poll(p, 3, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (int s = 0; s < 2; s++)
            if (fds[s] >= 0 && p[s].revents && !drain(fds[s], s)) {
                close(fds[s]);
                fds[s] = -1;
            }
        if (p[2].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si)
                if (si.ssi_signo == SIGTERM) stop_pipes = 1;
            for (;;) {
                int status;
                pid_t w = waitpid(-1, &status, WNOHANG);
                if (w == 0) break;
                if (w < 0) {
                    if (errno == EINTR) continue;
                    children = 0; /* ECHILD: nobody left below us */
                    break;
                }
                if (w == pid) {
                    leader_done = 1;
                    write_exit(exit_path, status);
                    /* Also on the overflow pipe: the exit file may not fit on a full disk. */
                    char text[32];
                    int len = WIFSIGNALED(status) ? snprintf(text, sizeof text, "- %d", WTERMSIG(status))
                                                  : snprintf(text, sizeof text, "%d -", WEXITSTATUS(status));
                    unsigned char eframe[64];
                    size_t flen = 0;
                    frame(eframe, &flen, EXIT_STREAM, (unsigned char *)text, (size_t)len);
                    send_overflow(eframe, flen);
                }
            }
        }
    }
    unreserve();
    return 0;
}

#define REQUEST_MAX (256 * 1024)
#define ARGS_MAX 65536

extern char **environ;

static void reply(int sock, const char *text) {
    while (send(sock, text, strlen(text), MSG_NOSIGNAL) < 0 && errno == EINTR) {
    }
}

/* One request: fork the shim of one job; the child never returns. */
static void start_one(int sock, int sfd, int devnull, char *req, size_t len, int *fds, int nfds) {
    size_t n = 0;
    for (size_t at = 0; at < len; at += strlen(req + at) + 1) n++;
    const char *cwd = req;
    size_t envc = n >= 2 ? (size_t)strtoul(req + strlen(req) + 1, NULL, 10) : 0;
    if (n < 2 || nfds < 2 || 2 + envc > n || n > ARGS_MAX) {
        reply(sock, n > ARGS_MAX ? "E 7" : "E 22"); /* E2BIG, EINVAL */
        return;
    }
    /* The environment, NULL, the shim's argv, NULL: sized to the request (arrays of
     * ARGS_MAX pointers on the stack made every shim fault in a megabyte's worth of
     * stack pages' tables). */
    size_t argc = n - 2 - envc;
    char **vec = malloc((n + 1) * sizeof *vec);
    if (!vec) {
        reply(sock, "E 12"); /* ENOMEM */
        return;
    }
    char **env = vec, **args = vec + envc + 1;
    size_t i = 0;
    for (size_t at = 0; at < len; at += strlen(req + at) + 1, i++) {
        if (i >= 2 + envc) args[i - 2 - envc] = req + at;
        else if (i >= 2) env[i - 2] = req + at;
    }
    env[envc] = NULL;
    args[argc] = NULL;
    pid_t pid = fork();
    if (pid < 0) {
        char text[32];
        snprintf(text, sizeof text, "E %d", errno);
        reply(sock, text);
        free(vec);
        return;
    }
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGCHLD, SIG_DFL);
        int in = nfds >= 3 ? fds[2] : devnull;
        /* Above every descriptor the dup2s below write, so none is clobbered first. */
        int hi[3];
        hi[0] = fcntl(in, F_DUPFD_CLOEXEC, 10);
        hi[1] = fcntl(fds[0], F_DUPFD_CLOEXEC, 10);
        hi[2] = fcntl(fds[1], F_DUPFD_CLOEXEC, 10);
        if (hi[0] < 0 || hi[1] < 0 || hi[2] < 0 || devnull < 0 || dup2(hi[0], 0) < 0 || dup2(hi[1], 1) < 0 ||
            dup2(devnull, 2) < 0 || dup2(hi[2], 3) < 0)
            _exit(127);
        for (int k = 0; k < 3; k++) close(hi[k]);
        for (int k = 0; k < nfds; k++)
            if (fds[k] > 3) close(fds[k]);
        if (devnull > 3) close(devnull);
        if (sock > 3) close(sock);
        if (sfd > 3) close(sfd);
        setsid();
        if (chdir(cwd) < 0) {
            dprintf(3, "E %d cwd\n", errno);
            _exit(127);
        }
        environ = env;
        _exit(shim_main((int)argc, args));
    }
    free(vec);
    char text[32];
    snprintf(text, sizeof text, "P %d", (int)pid);
    reply(sock, text);
}

static int serve(int sock) {
    /* Shims are reaped here, and only here: the daemon learns of a shim's end from its link's end of file. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    char *req = malloc(REQUEST_MAX + 1);
    /* Opened once: every shim's stderr (and stdin, without input). */
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (sfd < 0 || !req || devnull < 0) return 1;
    for (;;) {
        struct pollfd p[2] = {{sock, POLLIN, 0}, {sfd, POLLIN, 0}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            return 1;
        }
        if (p[1].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
            }
            while (waitpid(-1, NULL, WNOHANG) > 0) {
            }
        }
        if (!p[0].revents) continue;
        union {
            char buf[CMSG_SPACE(3 * sizeof(int))];
            struct cmsghdr align;
        } u;
        struct iovec iov = {req, REQUEST_MAX};
        struct msghdr msg = {0};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = u.buf;
        msg.msg_controllen = sizeof u.buf;
        ssize_t got = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return 0; /* the daemon is gone: its shims run on without us */
        int fds[3], nfds = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                for (int i = 0; i < count; i++) {
                    int fd;
                    memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                    if (nfds < 3) fds[nfds++] = fd;
                    else close(fd);
                }
            }
        req[got] = '\0';
        if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) reply(sock, "E 90"); /* EMSGSIZE */
        else start_one(sock, sfd, devnull, req, (size_t)got, fds, nfds);
        for (int i = 0; i < nfds; i++) close(fds[i]);
    }
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--server") == 0) return serve(0);
    return shim_main(argc, argv);
}

/*
 * ccxd-shim: the light parent of a ccxd job (see ccxd/supervision/shimjob.py).
 *
 * It starts the job in its own session, writes the job's stdout and stderr to
 * the job's spool (data file + 13-byte index records, the format of
 * ccxd/output/spool.py) and records the job's exit status in a file.  Nothing
 * depends on a pipe to the daemon, so a daemon may die and a new one adopt the
 * job: the output keeps flowing to disk and the exit status is not lost.
 *
 *   ccxd-shim DATA_PATH INDEX_PATH REPORT_FD EXIT_PATH CHUNK LIMIT CGROUP MARKER -- ARGV...
 *
 * DATA_PATH, INDEX_PATH: the spool files, created (data first, so an existing
 *   index has its data file) when the job first writes, so a silent job costs no
 *   file creation (the dearest part of starting a job on ext4 with many recent
 *   deletes).  If they cannot be created, the output goes to the overflow pipe
 *   as past a cut.
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
 *   the job joins between fork and exec (none of its processes ever runs
 *   outside its group; the shim itself stays out), or "-".
 * MARKER: NAME=VALUE put in the job's environment only (CCXD_JOB_ID=<job>: the
 *   shim is not one of the job's processes), or "-".
 *
 * A wake-up that read at least 4 KiB, or that read output within 1 ms of the
 * last one that did, is followed by a pause of 0.3 ms (cut short by any signal)
 * before the next read, so a busy writer's chunks come out near CHUNK bytes and
 * everyone downstream wakes less often; a job that writes now and then is never
 * held back (docs/decisions/9-shim-output-gathering.md).
 *
 * The shim is a child subreaper, so processes the job orphans stay below it.
 * It is done with the job once the leader has exited, both pipes are closed and
 * no child is left; SIGTERM means "stop waiting for the pipes" (something
 * outside the job holds them), and one still pending when the next job starts
 * is dropped.
 *
 *   ccxd-shim --server
 *
 * Spawn server (see ccxd/supervision/shimserver.py), so the daemon's event loop
 * never waits in vfork/exec: fd 0 is a SOCK_SEQPACKET socket to the daemon.
 * Each request is one message: NUL-terminated fields CWD, ENV_COUNT, ENV...,
 * then the shim's own arguments as above (REPORT_FD given as 3), with
 * SCM_RIGHTS descriptors: the overflow pipe, the report pipe and optionally
 * stdin.  The reply, in request order, is "P <pid> <start>" (the job's shim and
 * its start time; "P <pid>" if that could not be read) or "E <errno>"; the
 * daemon learns that the shim is through with the job from its overflow pipe
 * (the done frame below, or its end of file).
 *
 * The shims are pooled, so no job pays for a fork (docs/decisions/9-pooled-shims.md):
 * the server hands each request to an idle shim (its children, forked without
 * an exec, each with its own session and a SOCK_SEQPACKET link to the server),
 * forking one when none is idle.  The shim takes stdin, stdout = overflow pipe,
 * 3 = report pipe, CWD and exactly ENV, runs the job as above, sends a done
 * frame (stream 253, no data), waits until the daemon has closed its end of the
 * overflow pipe, closes its own, returns to "/" and tells the server it is
 * free.  Jobs stay one per shim at a time, so "no child left" still means this
 * job's processes are gone.  At most POOL_IDLE_MAX shims wait; one more that
 * finishes a job exits.  The server exits when the daemon closes the socket;
 * idle shims exit with it, busy ones once their job has ended (an adopting
 * daemon sees the job's end as its shim's).
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
#include <sys/mman.h>
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
#define DONE_STREAM 253
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
/* Page-aligned: a pooled shim gives back the pages a job's reads touched (see end_job). */
static unsigned char rbuf[READ_MAX + 4] __attribute__((aligned(4096)));
static size_t rbuf_used; /* bytes of rbuf a read reached */
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
static int buffers_failed; /* out of memory for this job's buffers */

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
    if (wbuf) return 1;
    if (buffers_failed) return 0;
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
    buffers_failed = 1; /* out of memory: the job's output is drained and dropped, the job never blocks */
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
        if (n > 0 && held + (size_t)n > rbuf_used) rbuf_used = held + (size_t)n;
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

/* A descriptor moved to 10 or above (close-on-exec): the ones a job's set-up writes (0-3) stay free. */
static int keep_high(int fd) {
    if (fd < 0) return -1;
    int high = fcntl(fd, F_DUPFD_CLOEXEC, 10);
    close(fd);
    return high;
}

/* A pooled shim keeps the groups' parent directories open: a job joins each group
 * through openat(parent, "GROUP/cgroup.procs"), a walk of two names instead of the
 * whole path (cgroup v1 has five hierarchies, so five opens per job).  A parent that
 * is gone (a daemon removed and remade it) falls back to the whole path and is
 * opened again for the next job. */
#define CG_PARENTS 16
static int pooled;
static struct {
    char *path;
    int fd;
} cg_parent[CG_PARENTS];

/* Split FILE into a kept parent and the part below it; -1 if it has none. */
static int cg_at(char *file, const char **below) {
    char *end = strrchr(file, '/');
    if (!pooled || !end || end == file) return -1;
    char *group = end - 1;
    while (group > file && *group != '/') group--;
    if (group == file) return -1;
    size_t len = (size_t)(group - file);
    int free_slot = -1;
    for (int i = 0; i < CG_PARENTS; i++) {
        if (!cg_parent[i].path) {
            if (free_slot < 0) free_slot = i;
        } else if (strlen(cg_parent[i].path) == len && memcmp(cg_parent[i].path, file, len) == 0) {
            *below = group + 1;
            return i;
        }
    }
    if (free_slot < 0) return -1;
    char *path = strndup(file, len);
    int fd = path ? open(path, O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
    if (fd >= 0) fd = keep_high(fd);
    if (fd < 0) {
        free(path);
        return -1;
    }
    cg_parent[free_slot].path = path;
    cg_parent[free_slot].fd = fd;
    *below = group + 1;
    return free_slot;
}

static void cg_forget(int i) {
    close(cg_parent[i].fd);
    free(cg_parent[i].path);
    cg_parent[i].path = NULL;
}

/* Set up once per shim process: a pooled shim (see pool_shim) runs one job after another. */
static sigset_t job_mask; /* the signal mask jobs start with */
static int sfd = -1;      /* SIGCHLD and SIGTERM */

static int shim_setup(void) {
    signal(SIGPIPE, SIG_IGN); /* no daemon on the overflow pipe: drop, do not die */
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, &job_mask);
    sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    return sfd;
}

/* Everything one job had goes before the next: spool files closed, blocks given back,
 * buffers freed, the per-job variables as at the start. */
static void end_job(void) {
    unreserve();
    if (data_fd >= 0) close(data_fd);
    if (index_fd >= 0) close(index_fd);
    data_fd = index_fd = -1;
    free(wbuf);
    free(obuf);
    free(fbuf);
    free(ibuf);
    wbuf = obuf = fbuf = ibuf = NULL;
    /* Whole pages inside rbuf only: past its end lie other variables. */
    if (rbuf_used > DEFAULT_PIPE) madvise(rbuf, rbuf_used & ~(size_t)4095, MADV_DONTNEED);
    rbuf_used = 0;
    size_written = batch_start = 0;
    wlen = ilen = olen = 0;
    cut = 0;
    overflow_ok = 1;
    pending_len[0] = pending_len[1] = 0;
    pipe_grown[0] = pipe_grown[1] = 0;
    round_bytes = 0;
    reserved = 0;
    reserve_off = 0;
    buffers_failed = 0;
}

/* The job could not start: say why on the report pipe, close it and what is open of the job's pipes. */
static int not_started(int report_fd, int error, const char *stage, const int *out, const int *err) {
    dprintf(report_fd, "E %d %s\n", error, stage);
    for (int i = 0; i < 2; i++) {
        if (out[i] >= 0) close(out[i]);
        if (err[i] >= 0) close(err[i]);
    }
    close(report_fd);
    return 127;
}

/* Run one job to its end (see the top of this file); REPORT_FD is closed on every path. */
static int run_job(int argc, char **argv) {
    if (argc < 11 || strcmp(argv[9], "--") != 0) {
        fprintf(stderr, "usage: ccxd-shim DATA_PATH INDEX_PATH REPORT_FD EXIT_PATH CHUNK LIMIT CGROUP MARKER -- ARGV...\n");
        if (argc > 3 && atoi(argv[3]) > 2) {
            dprintf(atoi(argv[3]), "E %d shim\n", EINVAL); /* every job's link starts with a report */
            close(atoi(argv[3]));
        }
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
    fcntl(report_fd, F_SETFD, FD_CLOEXEC);
    /* A stop meant for this shim's previous job must not cut this one short. */
    struct signalfd_siginfo si;
    while (sfd >= 0 && read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
    }

    int out[2] = {-1, -1}, err[2] = {-1, -1};
    if (sfd < 0 || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC))
        return not_started(report_fd, sfd < 0 ? EMFILE : errno, "shim", out, err);
    /* Joined files and environment are made here: the vforked child only makes system calls. */
    char *cg_files[64];
    const char *cg_below[64];
    int cg_dir[64];
    static volatile char cg_stale[CG_PARENTS]; /* set by the vforked child */
    size_t ncg = 0;
    for (char *file = cgroup; file && *file && ncg < 63;) {
        char *next = strchr(file, '\n');
        if (next) *next++ = '\0';
        cg_dir[ncg] = cg_at(file, &cg_below[ncg]);
        cg_files[ncg++] = file;
        file = next;
    }
    cg_files[ncg] = NULL;
    char **job_env = environ;
    if (marker) {
        size_t envc = 0;
        while (environ[envc]) envc++;
        job_env = malloc((envc + 2) * sizeof *job_env);
        if (job_env) {
            memcpy(job_env, environ, envc * sizeof *job_env);
            job_env[envc] = marker;
            job_env[envc + 1] = NULL;
        }
    }

    /* vfork: the job's exec costs no copy of the shim's page tables, and the
     * shim resumes once the job has exec'd (or failed to, saying why below). */
    static volatile int failed[2]; /* errno, stage: 0 exec, 1 joining the cgroup */
    failed[0] = 0;
    pid_t pid = job_env ? vfork() : -1;
    if (pid < 0) {
        int error = job_env ? errno : ENOMEM;
        if (job_env != environ) free(job_env);
        return not_started(report_fd, error, "shim", out, err);
    }
    if (pid == 0) {
        setsid();
        for (size_t i = 0; i < ncg; i++) {
            int cg = cg_dir[i] >= 0 ? openat(cg_parent[cg_dir[i]].fd, cg_below[i], O_WRONLY | O_CLOEXEC) : -1;
            if (cg < 0 && cg_dir[i] >= 0) cg_stale[cg_dir[i]] = 1;
            if (cg < 0) cg = open(cg_files[i], O_WRONLY | O_CLOEXEC);
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
        sigprocmask(SIG_SETMASK, &job_mask, NULL);
        execvpe(job_argv[0], job_argv, job_env);
        failed[1] = 0;
        failed[0] = errno ? errno : ENOEXEC;
        _exit(127);
    }
    if (job_env != environ) free(job_env);
    for (int i = 0; i < CG_PARENTS; i++)
        if (cg_stale[i]) {
            cg_stale[i] = 0;
            if (cg_parent[i].path) cg_forget(i);
        }
    close(out[1]);
    close(err[1]);
    out[1] = err[1] = -1;
    if (failed[0]) {
        int status;
        waitpid(pid, &status, 0);
        return not_started(report_fd, failed[0], failed[1] ? "cgroup" : "exec", out, err);
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
    end_job();
    return 0;
}

static int shim_main(int argc, char **argv) {
    shim_setup();
    return run_job(argc, argv);
}

#define REQUEST_MAX (256 * 1024)
#define ARGS_MAX 65536
/* Shims kept waiting for a job; one more that finishes a job exits. */
#ifndef POOL_IDLE_MAX
#define POOL_IDLE_MAX 32
#endif

extern char **environ;

static void reply(int sock, const char *text) {
    while (send(sock, text, strlen(text), MSG_NOSIGNAL) < 0 && errno == EINTR) {
    }
}

/* One datagram with up to three descriptors; its length, 0 at end of file, -1 on error. */
static ssize_t receive(int sock, char *buf, int *fds, int *nfds, int *truncated) {
    union {
        char buf[CMSG_SPACE(3 * sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = {buf, REQUEST_MAX};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = u.buf;
    msg.msg_controllen = sizeof u.buf;
    ssize_t got;
    do got = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    while (got < 0 && errno == EINTR);
    *nfds = 0;
    if (got < 0) return -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            for (int i = 0; i < count; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                if (*nfds < 3) fds[(*nfds)++] = fd;
                else close(fd);
            }
        }
    buf[got] = '\0';
    *truncated = (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0;
    return got;
}

/* The number of NUL-terminated fields in a request, and its ENV_COUNT (the second field; 0 without one). */
static size_t count_fields(const char *req, size_t len, size_t *envc) {
    size_t n = 0;
    for (size_t at = 0; at < len; at += strlen(req + at) + 1) n++;
    *envc = n >= 2 ? (size_t)strtoul(req + strlen(req) + 1, NULL, 10) : 0;
    return n;
}

/* Take one request (checked by the server): stdin, stdout = the link, 3 = the report
 * pipe, CWD and exactly ENV, then run the job.  0 if the link could not be set up. */
static int take_job(char *req, size_t len, int *fds, int nfds, int devnull) {
    size_t envc;
    size_t n = count_fields(req, len, &envc);
    size_t argc = n - 2 - envc;
    /* The environment, NULL, the shim's argv, NULL: sized to the request (arrays of
     * ARGS_MAX pointers on the stack made every shim fault in a megabyte's worth of
     * stack pages' tables). */
    char **vec = malloc((n + 1) * sizeof *vec);
    int in = nfds >= 3 ? fds[2] : devnull;
    /* Above every descriptor the dup2s below write, so none is clobbered first. */
    int hi[3];
    hi[0] = fcntl(in, F_DUPFD_CLOEXEC, 10);
    hi[1] = fcntl(fds[0], F_DUPFD_CLOEXEC, 10);
    hi[2] = fcntl(fds[1], F_DUPFD_CLOEXEC, 10);
    int ok = vec && hi[0] >= 0 && hi[1] >= 0 && hi[2] >= 0 && dup2(hi[0], 0) >= 0 && dup2(hi[1], 1) >= 0 &&
             dup2(hi[2], 3) >= 0;
    for (int k = 0; k < 3; k++)
        if (hi[k] >= 0) close(hi[k]);
    for (int k = 0; k < nfds; k++)
        if (fds[k] > 3) close(fds[k]);
    if (!ok) {
        free(vec);
        return 0; /* the link's end of file without a report: the daemon says the shim failed */
    }
    char **env = vec, **args = vec + envc + 1;
    size_t i = 0;
    for (size_t at = 0; at < len; at += strlen(req + at) + 1, i++) {
        if (i >= 2 + envc) args[i - 2 - envc] = req + at;
        else if (i >= 2) env[i - 2] = req + at;
    }
    env[envc] = NULL;
    args[argc] = NULL;
    if (chdir(req) < 0) {
        dprintf(3, "E %d cwd\n", errno);
        close(3);
    } else {
        char **own = environ;
        environ = env;
        run_job((int)argc, args);
        environ = own;
    }
    free(vec);
    return 1;
}

/* A pooled shim: one job after another from the server, each a datagram on LINK as
 * the server got it (with its descriptors).  After each, the job's descriptors are
 * closed (the link's end of file tells the daemon the job's shim is done), and
 * "SLOT PID" on IDLE_W says it is free again.  It exits at the end of file on LINK:
 * the server is gone, or keeps enough idle shims. */
static int pool_shim(int link, int idle_w, int devnull, int slot) {
    link = keep_high(link);
    idle_w = keep_high(idle_w);
    devnull = keep_high(devnull);
    char *req = malloc(REQUEST_MAX + 1);
    if (link < 0 || idle_w < 0 || devnull < 0 || !req || dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 ||
        dup2(devnull, 2) < 0 || shim_setup() < 0)
        return 1;
    pooled = 1;
    sfd = keep_high(sfd);
    int32_t free_msg[2] = {slot, (int32_t)getpid()};
    for (;;) {
        int fds[3], nfds, truncated;
        ssize_t got = receive(link, req, fds, &nfds, &truncated);
        if (got <= 0) return 0;
        if (take_job(req, (size_t)got, fds, nfds, devnull)) {
            /* Done with the job; the next waits until the daemon has closed its end of the
             * link (POLLERR here): the daemon finds a job's processes below its shim, and
             * until it knows the job ended they must be this job's alone. */
            unsigned char done[5] = {DONE_STREAM, 0, 0, 0, 0};
            if (write(1, done, sizeof done) == (ssize_t)sizeof done) {
                struct pollfd w[2] = {{1, 0, 0}, {link, POLLIN, 0}};
                while (poll(w, 2, -1) < 0 && errno == EINTR) {
                }
                if (w[1].revents && !w[0].revents) return 0; /* the server is gone: so is the pool */
            }
        }
        dup2(devnull, 0);
        dup2(devnull, 1); /* the link: its end of file */
        close(3);
        if (chdir("/") < 0) return 0; /* no idle shim pins a job's directory */
        if (write(idle_w, free_msg, sizeof free_msg) != (ssize_t)sizeof free_msg) return 0;
    }
}

/* The server's shims (a slot is free once its shim is reaped) and the idle ones. */
struct shim {
    pid_t pid;
    int sock;                /* the server's end of the shim's link, -1 once closed */
    unsigned long long start; /* its start time (clock ticks since boot), 0 if unknown */
};
static struct shim *shims;
static size_t nshims;
static int idle[POOL_IDLE_MAX];
static size_t nidle;

static void forget_idle(int slot) {
    for (size_t i = 0; i < nidle; i++)
        if (idle[i] == slot) {
            idle[i] = idle[--nidle];
            return;
        }
}

/* The start time of PID from /proc/PID/stat (field 22), 0 if it cannot be read: the
 * daemon keeps it with the job to know the shim again after a restart, and reading
 * it here once per shim spares the daemon a read per job. */
static unsigned long long start_of(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold anything */
    for (int field = 2; p && field < 22; field++) p = strchr(p + 1, ' ');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

/* Fork a shim into a free slot; its slot, or -1 (errno set).  HELD: descriptors of the
 * request at hand, which the new shim gets through its link, not by inheritance (a copy
 * inherited would keep the job's link open past its end). */
static int new_shim(int sock, int sfd, int idle_r, int idle_w, int devnull, const int *held, int nheld) {
    size_t slot = 0;
    while (slot < nshims && (shims[slot].pid || shims[slot].sock >= 0)) slot++;
    if (slot == nshims) {
        size_t more = nshims ? 2 * nshims : 64;
        struct shim *grown = realloc(shims, more * sizeof *grown);
        if (!grown) return -1;
        for (size_t i = nshims; i < more; i++) grown[i] = (struct shim){0, -1, 0};
        shims = grown;
        nshims = more;
    }
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(sp[0]);
        close(sp[1]);
        return -1;
    }
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGCHLD, SIG_DFL);
        close(sock);
        close(sfd);
        close(idle_r);
        close(sp[0]);
        for (size_t i = 0; i < nshims; i++)
            if (shims[i].sock >= 0) close(shims[i].sock);
        for (int i = 0; i < nheld; i++) close(held[i]);
        setsid();
        _exit(pool_shim(sp[1], idle_w, devnull, (int)slot));
    }
    close(sp[1]);
    shims[slot] = (struct shim){pid, sp[0], start_of(pid)};
    return (int)slot;
}

static int send_job(int to, const char *req, size_t len, const int *fds, int nfds) {
    union {
        char buf[CMSG_SPACE(3 * sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = {(void *)req, len};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = u.buf;
    msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
    memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
    ssize_t sent;
    do sent = sendmsg(to, &msg, MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR);
    return sent == (ssize_t)len ? 0 : -1;
}

/* One request: check it, hand it to an idle shim (or a new one), reply with the shim's pid. */
static void start_one(int sock, int sfd, int idle_r, int idle_w, int devnull, char *req, size_t len, int *fds,
                      int nfds) {
    errno = 0;
    size_t envc;
    size_t n = count_fields(req, len, &envc);
    if (n < 2 || nfds < 2 || 2 + envc > n || n > ARGS_MAX) {
        reply(sock, n > ARGS_MAX ? "E 7" : "E 22"); /* E2BIG, EINVAL */
        return;
    }
    int slot = -1;
    while (nidle && slot < 0) {
        int s = idle[--nidle];
        if (send_job(shims[s].sock, req, len, fds, nfds) == 0) slot = s;
        else {
            close(shims[s].sock); /* it died while idle: its reaping frees the slot */
            shims[s].sock = -1;
        }
    }
    if (slot < 0) {
        slot = new_shim(sock, sfd, idle_r, idle_w, devnull, fds, nfds);
        if (slot >= 0 && send_job(shims[slot].sock, req, len, fds, nfds) < 0) {
            close(shims[slot].sock);
            shims[slot].sock = -1;
            slot = -1;
        }
    }
    char text[64];
    if (slot < 0) snprintf(text, sizeof text, "E %d", errno ? errno : EAGAIN);
    else if (shims[slot].start) snprintf(text, sizeof text, "P %d %llu", (int)shims[slot].pid, shims[slot].start);
    else snprintf(text, sizeof text, "P %d", (int)shims[slot].pid);
    reply(sock, text);
}

/* "SLOT PID" from shims done with a job: kept idle, or told to exit past POOL_IDLE_MAX. */
static void take_idle(int idle_r) {
    int32_t msgs[2 * 256];
    ssize_t got;
    while ((got = read(idle_r, msgs, sizeof msgs)) > 0 || (got < 0 && errno == EINTR))
        for (ssize_t i = 0; i + 1 < got / (ssize_t)sizeof(int32_t); i += 2) {
            int32_t slot = msgs[i], pid = msgs[i + 1];
            if (slot < 0 || (size_t)slot >= nshims || shims[slot].pid != pid || shims[slot].sock < 0) continue;
            if (nidle < POOL_IDLE_MAX) idle[nidle++] = slot;
            else {
                close(shims[slot].sock);
                shims[slot].sock = -1;
            }
        }
}

static void reap(void) {
    pid_t pid;
    while ((pid = waitpid(-1, NULL, WNOHANG)) > 0)
        for (size_t i = 0; i < nshims; i++)
            if (shims[i].pid == pid) {
                forget_idle((int)i);
                if (shims[i].sock >= 0) close(shims[i].sock);
                shims[i] = (struct shim){0, -1, 0};
                break;
            }
}

static int serve(int sock) {
    /* Shims are reaped here, and only here: the daemon learns of a job's end from its link's end of file. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    char *req = malloc(REQUEST_MAX + 1);
    /* Opened once: every shim's stderr (and stdin, without input). */
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    int idle_pipe[2];
    if (sfd < 0 || !req || devnull < 0 || pipe2(idle_pipe, O_CLOEXEC) < 0) return 1;
    fcntl(idle_pipe[0], F_SETFL, O_NONBLOCK);
    for (;;) {
        struct pollfd p[3] = {{sock, POLLIN, 0}, {sfd, POLLIN, 0}, {idle_pipe[0], POLLIN, 0}};
        if (poll(p, 3, -1) < 0) {
            if (errno == EINTR) continue;
            return 1;
        }
        if (p[1].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
            }
            reap();
        }
        if (p[2].revents) take_idle(idle_pipe[0]);
        if (!p[0].revents) continue;
        int fds[3], nfds, truncated;
        ssize_t got = receive(sock, req, fds, &nfds, &truncated);
        if (got <= 0) return 0; /* the daemon is gone: busy shims finish their jobs, idle ones exit */
        if (truncated) reply(sock, "E 90"); /* EMSGSIZE */
        else start_one(sock, sfd, idle_pipe[0], idle_pipe[1], devnull, req, (size_t)got, fds, nfds);
        for (int i = 0; i < nfds; i++) close(fds[i]);
    }
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--server") == 0) return serve(0);
    return shim_main(argc, argv);
}

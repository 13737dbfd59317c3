/*
 * ctr-monitor: the long-lived part of a detached native container's monitor.
 *
 * `ctr start` forks a monitor that spawns the container (so PID 1 is its child),
 * reports "ok" and then execs this program: exec keeps the pid and the children,
 * and a Python interpreter would stay resident for the container's whole life
 * (~19 MB) where this needs a few hundred KB.
 *
 *   ctr-monitor --pid PID --log PATH [--stdout FD] [--stderr FD] [--tty FD]
 *               -- FINISHER [ARG...]
 *
 * It sleeps in poll() on a pidfd of PID 1 and on the container's output fds (a
 * pipe per stream, or with --tty the terminal's master, logged as stdout), and
 * appends each read to PATH in Docker's json-file format, byte for byte what
 * ctr.state.logs.encode() writes: one entry per line (split as Python's
 * bytes.splitlines() splits: \n, \r\n, \r), a partial line at a read boundary
 * being an entry of its own. Invalid UTF-8 becomes U+FFFD as Python's
 * decode("utf-8", "replace") does; a multibyte character cut by a read boundary
 * is held until the next read, so it is never mangled. Once PID 1 has exited it
 * drains what is left, reads PID 1's status (leaving it a zombie for the finisher to
 * reap) and execs FINISHER ARG... --exit-code N, where N is Docker's exit code (the
 * status, or 128+signal). If that exec fails it exits N (and init reaps PID 1).
 *
 * A failure to write the log loses that output, never the container: the loop
 * keeps reading (so the container never blocks on a full pipe) and still reports
 * the exit.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

#define PROG "ctr-monitor"
#define EXIT_USAGE 125 /* Docker's code for "the runtime itself failed" */
#define MAX_OUTPUTS 2

enum {
    CHUNK = 65536,   /* one read, as the Python loop reads */
    MAX_CARRY = 3,   /* the longest incomplete UTF-8 sequence held over to the next read */
    /* An input byte becomes at most 6 output bytes (\uXXXX); an entry adds 74 more. */
    ENTRY_OVERHEAD = 128,
    OUT_CAP = (CHUNK + MAX_CARRY) * 6 + ENTRY_OVERHEAD,
};

struct output {
    int fd;
    const char *stream; /* "stdout" or "stderr" */
    bool open;
    size_t ncarry;
    unsigned char carry[MAX_CARRY];
};

/* Static, so the pages only become resident when a burst of output touches them. */
static unsigned char in_buf[MAX_CARRY + CHUNK];
static char out_buf[OUT_CAP];
static size_t out_len;
static int log_fd = -1;

static void warn(const char *fmt, const char *arg)
{
    /* stderr is /dev/null once ctr has detached us; this is for running it by hand */
    fprintf(stderr, PROG ": ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
}

static _Noreturn void usage(const char *why, const char *arg)
{
    warn(why, arg);
    fprintf(stderr, "usage: " PROG " --pid PID --log PATH [--stdout FD] [--stderr FD] [--tty FD] [--report FD]"
                    " -- FINISHER [ARG...]\n");
    exit(EXIT_USAGE);
}

static int parse_int(const char *option, const char *s, int min)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || errno || end == s || *end || v < min || v > INT_MAX)
        usage("%s needs a number", option);
    return (int)v;
}

/* ---- the log: Docker's json-file format, as ctr.state.logs.encode writes it ---- */

static void flush_log(void)
{
    size_t done = 0;
    while (log_fd >= 0 && done < out_len) {
        ssize_t n = write(log_fd, out_buf + done, out_len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            warn("cannot write the log: %s (output is lost)", strerror(n < 0 ? errno : EIO));
            break;
        }
        done += (size_t)n;
    }
    out_len = 0;
}

static void put(const char *s, size_t n)
{
    memcpy(out_buf + out_len, s, n);
    out_len += n;
}

static void put_str(const char *s)
{
    put(s, strlen(s));
}

static void put_u(unsigned u)
{
    static const char hex[] = "0123456789abcdef"; /* lower case, as json.dumps */
    char e[6] = {'\\', 'u', hex[(u >> 12) & 15], hex[(u >> 8) & 15], hex[(u >> 4) & 15], hex[u & 15]};
    put(e, sizeof e);
}

/*
 * UTF-8 decoding with replacement as CPython's (and the Unicode standard's "maximal
 * subpart" practice): a lead byte followed by valid continuations that stop short
 * becomes a single U+FFFD, any other invalid byte one U+FFFD each. The second byte's
 * range depends on the lead (no overlong forms, no surrogates, nothing past U+10FFFF).
 * Returns the sequence length a lead byte announces (0: not a lead byte) and sets
 * [*lo, *hi], the range of its first continuation byte.
 */
static size_t lead_length(unsigned c, unsigned *lo, unsigned *hi)
{
    *lo = 0x80;
    *hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        return 2;
    if (c >= 0xE0 && c <= 0xEF) {
        if (c == 0xE0)
            *lo = 0xA0;
        if (c == 0xED)
            *hi = 0x9F;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (c == 0xF0)
            *lo = 0x90;
        if (c == 0xF4)
            *hi = 0x8F;
        return 4;
    }
    return 0;
}

/* The escaped JSON string body of `p`, as json.dumps(ensure_ascii=True) of its decoding. */
static void put_escaped(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c < 0x80) {
            i++;
            switch (c) {
            case '"': put_str("\\\""); break;
            case '\\': put_str("\\\\"); break;
            case '\n': put_str("\\n"); break;
            case '\r': put_str("\\r"); break;
            case '\t': put_str("\\t"); break;
            case '\b': put_str("\\b"); break;
            case '\f': put_str("\\f"); break;
            default:
                if (c < 0x20 || c == 0x7F) { /* json.dumps escapes all but ' '..'~' */
                    put_u(c);
                } else {
                    char ch = (char)c;
                    put(&ch, 1);
                }
            }
            continue;
        }
        unsigned lo, hi;
        size_t len = lead_length(c, &lo, &hi);
        if (len == 0) {
            put_u(0xFFFD);
            i++;
            continue;
        }
        uint32_t cp = c & (0x7F >> len);
        size_t j = 1;
        for (; j < len && i + j < n; j++) {
            unsigned b = p[i + j];
            if (b < lo || b > hi)
                break;
            lo = 0x80;
            hi = 0xBF;
            cp = (cp << 6) | (b & 0x3F);
        }
        i += j;
        if (j < len) {
            put_u(0xFFFD); /* the maximal valid prefix, cut short: one replacement */
        } else if (cp >= 0x10000) {
            cp -= 0x10000;
            put_u(0xD800 + (cp >> 10));
            put_u(0xDC00 + (cp & 0x3FF));
        } else {
            put_u(cp);
        }
    }
}

/*
 * How many bytes at the end of p[0..n) are the start of a multibyte character that
 * the next read may complete (0: none). Such a tail never contains \r or \n.
 */
static size_t incomplete_tail(const unsigned char *p, size_t n)
{
    for (size_t k = 1; k <= MAX_CARRY && k <= n; k++) {
        unsigned c = p[n - k];
        if (c >= 0x80 && c <= 0xBF)
            continue; /* a continuation byte: its lead is further back */
        unsigned lo, hi;
        size_t len = lead_length(c, &lo, &hi);
        if (k >= len)
            return 0; /* not a lead byte, or the character is complete */
        for (size_t j = 1; j < k; j++) {
            unsigned b = p[n - k + j];
            if (b < lo || b > hi)
                return 0; /* already invalid: nothing the next read can fix */
            lo = 0x80;
            hi = 0xBF;
        }
        return k;
    }
    return 0;
}

/* RFC 3339 with nanoseconds, UTC: 2026-11-27T14:36:31.625753164Z */
static void timestamp(char *buf, size_t size)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, size - n, ".%09ldZ", (long)ts.tv_nsec);
}

/* One entry per line of the chunk, all with the chunk's time; written whole, entry by entry. */
static void log_chunk(const char *stream, const unsigned char *p, size_t n)
{
    char stamp[64];
    size_t start = 0;
    if (n == 0)
        return;
    timestamp(stamp, sizeof stamp);
    while (start < n) {
        size_t end = start;
        while (end < n && p[end] != '\n' && p[end] != '\r')
            end++;
        if (end < n)
            end += (p[end] == '\r' && end + 1 < n && p[end + 1] == '\n') ? 2 : 1;
        if (out_len + (end - start) * 6 + ENTRY_OVERHEAD > OUT_CAP)
            flush_log();
        put_str("{\"log\": \"");
        put_escaped(p + start, end - start);
        put_str("\", \"stream\": \"");
        put_str(stream);
        put_str("\", \"time\": \"");
        put_str(stamp);
        put_str("\"}\n");
        start = end;
    }
    flush_log();
}

/* ---- the container's outputs ---- */

static void close_output(struct output *o)
{
    log_chunk(o->stream, o->carry, o->ncarry); /* a character that will never be completed */
    o->ncarry = 0;
    close(o->fd);
    o->open = false;
}

/* One read into the log. Returns true if there was data, false for nothing now or the end. */
static bool copy_once(struct output *o)
{
    ssize_t n;
    memcpy(in_buf, o->carry, o->ncarry);
    do
        n = read(o->fd, in_buf + o->ncarry, CHUNK);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return false;
    if (n <= 0) {
        /* EOF; EIO is a terminal whose every slave fd is closed; any other error ends it too */
        close_output(o);
        return false;
    }
    size_t len = o->ncarry + (size_t)n;
    o->ncarry = incomplete_tail(in_buf, len);
    len -= o->ncarry;
    memcpy(o->carry, in_buf + len, o->ncarry);
    log_chunk(o->stream, in_buf, len);
    return true;
}

/* ---- process plumbing ---- */

/* Nothing we hold (pidfd, log, a -i container's stdin) may leak into the finisher. */
static void cloexec_from(int first)
{
    if (syscall(SYS_close_range, (unsigned)first, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
        return;
    DIR *d = opendir("/proc/self/fd"); /* kernels before 5.11 */
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        if (fd >= first && fd != dirfd(d))
            fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC);
    }
    closedir(d);
}

/* Docker's exit code: the process's own, or 128+N when signal N killed it. */
static int docker_exit_code(const siginfo_t *si)
{
    if (si->si_code == CLD_KILLED || si->si_code == CLD_DUMPED)
        return 128 + si->si_status;
    return si->si_status & 0xff;
}

static void add_output(struct output *outs, size_t *n, const char *option, const char *value,
                       const char *stream)
{
    if (*n == MAX_OUTPUTS)
        usage("too many outputs at %s", option);
    int fd = parse_int(option, value, 0);
    if (fcntl(fd, F_GETFD) < 0)
        usage("%s: not an open file descriptor", option);
    outs[(*n)++] = (struct output){.fd = fd, .stream = stream, .open = true};
}

int main(int argc, char **argv)
{
    struct output outs[MAX_OUTPUTS];
    size_t nouts = 0;
    int pid = 0;
    const char *log_path = NULL;
    bool tty = false, pipes = false;
    int report_fd = -1;
    int i;

    for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i += 2) {
        const char *opt = argv[i], *val = argv[i + 1];
        if (strcmp(opt, "--pid") == 0)
            pid = parse_int(opt, val, 1);
        else if (!val || strcmp(val, "--") == 0)
            usage("%s needs a value", opt);
        else if (strcmp(opt, "--log") == 0)
            log_path = val;
        else if (strcmp(opt, "--stdout") == 0 || strcmp(opt, "--stderr") == 0) {
            add_output(outs, &nouts, opt, val, opt + 2);
            pipes = true;
        } else if (strcmp(opt, "--report") == 0) {
            report_fd = parse_int(opt, val, 0);
        } else if (strcmp(opt, "--tty") == 0) {
            add_output(outs, &nouts, opt, val, "stdout");
            tty = true;
        } else
            usage("unknown option %s", opt);
    }
    if (i >= argc - 1)
        usage("%s", "no finisher after --");
    if (!pid || !log_path)
        usage("%s", "--pid and --log are required");
    if (tty && (pipes || nouts > 1))
        usage("%s", "--tty is the only output of a terminal");
    char **finisher = argv + i + 1;

    /* PID 1 must be our child: only then is its pid ours until we reap it. */
    siginfo_t info = {0};
    if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) < 0) {
        char pid_str[16];
        snprintf(pid_str, sizeof pid_str, "%d", pid);
        usage("process %s is not a child of this process", pid_str);
    }

    /* Tell `ctr start` the container runs only now that we are its keeper, so that what
       it then sees (ctr explain, ctr compare) is the keeper for the container's life. */
    if (report_fd >= 0) {
        if (write(report_fd, "ok", 2) != 2)
            warn("cannot report to ctr start: %s", strerror(errno));
        close(report_fd);
    }

    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, SIG_DFL); /* an ignored SIGCHLD would reap PID 1 behind our back */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    cloexec_from(3);
    log_fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (log_fd < 0)
        warn("cannot open the log: %s (output is lost)", strerror(errno));
    if (chdir("/") < 0) /* hold no directory (or its mount) busy for the container's life */
        warn("cannot chdir to /: %s", strerror(errno));
    for (size_t k = 0; k < nouts; k++)
        fcntl(outs[k].fd, F_SETFL, fcntl(outs[k].fd, F_GETFL) | O_NONBLOCK);

    /* A pidfd (always close-on-exec) turns PID 1's exit into a poll() event. Without one
     * (kernel < 5.3) the outputs' EOF, when PID 1's namespace is torn down, ends the loop. */
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0)
        warn("pidfd_open: %s (waiting for the outputs to close instead)", strerror(errno));

    bool exited = false;
    while (!exited) {
        struct pollfd fds[MAX_OUTPUTS + 1];
        struct output *owner[MAX_OUTPUTS + 1];
        nfds_t nfds = 0;
        for (size_t k = 0; k < nouts; k++) {
            if (outs[k].open) {
                owner[nfds] = &outs[k];
                fds[nfds++] = (struct pollfd){.fd = outs[k].fd, .events = POLLIN};
            }
        }
        if (pidfd >= 0) {
            owner[nfds] = NULL;
            fds[nfds++] = (struct pollfd){.fd = pidfd, .events = POLLIN};
        }
        if (nfds == 0)
            break;
        if (poll(fds, nfds, -1) < 0) {
            if (errno == EINTR)
                continue;
            warn("poll: %s", strerror(errno));
            break; /* cannot watch any more: fall through to a blocking waitpid */
        }
        for (nfds_t k = 0; k < nfds; k++) {
            if (!fds[k].revents)
                continue;
            if (owner[k])
                copy_once(owner[k]);
            else
                exited = true;
        }
    }

    /* What PID 1 wrote just before it exited; stop at "nothing more now", as a writer
     * may have passed its end of the pipe on to a process outside the container. */
    for (size_t k = 0; k < nouts; k++) {
        if (!outs[k].open)
            continue;
        while (copy_once(&outs[k]))
            ;
        if (outs[k].open)
            close_output(&outs[k]);
    }

    /* PID 1's status, leaving it a zombie: the finisher reaps it once its end is recorded,
     * so until then its pid cannot be taken by an unrelated process that `ctr kill` or
     * `ctr exec` might reach through the record. */
    siginfo_t si;
    int r;
    do {
        memset(&si, 0, sizeof si);
        r = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT);
    } while (r < 0 && errno == EINTR);
    int code = r < 0 ? EXIT_USAGE : docker_exit_code(&si);
    if (pidfd >= 0)
        close(pidfd);
    if (log_fd >= 0)
        close(log_fd);

    /* finisher argv + "--exit-code" N + NULL */
    size_t nf = (size_t)(argc - (finisher - argv));
    char **args = calloc(nf + 3, sizeof *args);
    char code_str[16];
    snprintf(code_str, sizeof code_str, "%d", code);
    if (args) {
        memcpy(args, finisher, nf * sizeof *args);
        args[nf] = "--exit-code";
        args[nf + 1] = code_str;
        execv(args[0], args);
        warn("cannot run the finisher: %s", strerror(errno));
        free(args);
    }
    return code;
}

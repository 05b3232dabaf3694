/*
 * The impairment forwarder: relays every IP packet between two TUN devices, applying per direction
 * a rate limit, a fixed delay (plus optional jitter) and random loss (Bernoulli, or bursty:
 * Gilbert–Elliott), with its own seeded PRNG so a run can be repeated.
 *
 * Why C: Node cannot make the TUNSETIFF ioctl, and the relay must stay precise at the millisecond
 * under a loaded machine; a 300-line poll loop with no allocation and no garbage collector does.
 *
 *   tun-forwarder <tun-a> <tun-b> <seed> <spec a→b> <spec b→a>
 *   spec: delay=MS,jitter=MS,loss=PERCENT,burst=PACKETS,rate=MBIT,queue=PACKETS (all optional)
 *
 * It creates both devices (IFF_TUN | IFF_NO_PI: bare IP packets), prints {"ready":true} and then
 * relays; the caller moves each device into its namespace and configures it. stdin, one command a
 * line: `stats` prints the counters as one JSON line; `drops` the times of the drops since the last
 * `drops` (CLOCK_MONOTONIC ms, the clock of Node's process.hrtime); `set ab|ba <spec>` changes one
 * direction live.
 * On stdin EOF, SIGTERM or SIGINT it prints the final counters and exits (the devices vanish with it).
 *
 * Model per direction, in this order: loss (a dropped packet never occupies the link), then the
 * rate limit (a FIFO serialising packets at `rate`; when `queue` packets wait, tail drop), then the
 * delay. Jitter is uniform in [0, jitter] and never reorders: a packet leaves no earlier than the
 * one before it (one queue, like a real link). Loss with burst=B (B > 1): Gilbert's two states, the
 * bad one losing every packet, mean bad run B packets, long-run loss `loss` percent.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

/* The devices' MTU is 1500 and IFF_VNET_HDR is off, so no packet is longer than that (no GSO). */
#define MAX_PACKET 2048
#define MAX_QUEUE 4096
/* Drop times kept per direction until the next `drops` command (older ones are overwritten). */
#define MAX_DROP_LOG 4096

struct spec {
  double delay_ms, jitter_ms, loss, burst, rate_mbit;
  int queue;
};

struct packet {
  uint64_t due_ns;
  uint16_t length;
  unsigned char *data;
};

struct direction {
  const char *name;
  int in, out;
  struct spec spec;
  uint64_t rng;
  int bad;          /* Gilbert state */
  int last_dropped; /* for counting loss bursts */
  uint64_t link_free_ns, last_due_ns;
  struct packet ring[MAX_QUEUE];
  int head, count;
  /* when the loss model dropped packets (CLOCK_MONOTONIC ns, the clock of Node's process.hrtime) */
  uint64_t drop_log[MAX_DROP_LOG];
  uint64_t drop_log_count;
  /* counters */
  uint64_t received, forwarded, dropped, loss_bursts, queue_drops, delayed, bytes, write_errors;
  double delay_sum_ms;
};

static volatile sig_atomic_t stop_requested = 0;
static void on_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* splitmix64: small, fast, well mixed; one stream per direction so each is reproducible alone. */
static uint64_t next_u64(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static double uniform(uint64_t *state) { return (double)(next_u64(state) >> 11) / 9007199254740992.0; }

static int parse_spec(const char *text, struct spec *out) {
  struct spec s = *out;
  char buffer[512];
  snprintf(buffer, sizeof buffer, "%s", text);
  for (char *save = NULL, *item = strtok_r(buffer, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(item, '=');
    if (!eq) return -1;
    *eq = 0;
    char *end;
    double value = strtod(eq + 1, &end);
    if (*end || value < 0) return -1;
    if (!strcmp(item, "delay")) s.delay_ms = value;
    else if (!strcmp(item, "jitter")) s.jitter_ms = value;
    else if (!strcmp(item, "loss") && value <= 100) s.loss = value;
    else if (!strcmp(item, "burst") && value >= 1) s.burst = value;
    else if (!strcmp(item, "rate")) s.rate_mbit = value;
    else if (!strcmp(item, "queue") && value >= 1 && value <= MAX_QUEUE) s.queue = (int)value;
    else return -1;
  }
  *out = s;
  return 0;
}

static int open_tun(const char *name) {
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return -1;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Whether the loss model drops the next packet. */
static int lose(struct direction *d) {
  double p = d->spec.loss / 100.0;
  if (p <= 0) return 0;
  if (d->spec.burst <= 1) return uniform(&d->rng) < p;
  if (p >= 1) return 1;
  /* Gilbert: leave the bad state with r = 1/burst; enter it with q so that q / (q + r) = p. */
  double r = 1.0 / d->spec.burst, q = p * r / (1.0 - p);
  d->bad = d->bad ? uniform(&d->rng) >= r : uniform(&d->rng) < q;
  return d->bad;
}

static void receive(struct direction *d, unsigned char *scratch) {
  for (;;) {
    ssize_t n = read(d->in, scratch, MAX_PACKET);
    if (n <= 0) return; /* EAGAIN: drained */
    uint64_t now = now_ns();
    d->received++;
    if (lose(d)) {
      d->drop_log[d->drop_log_count++ % MAX_DROP_LOG] = now;
      d->dropped++;
      if (!d->last_dropped) d->loss_bursts++;
      d->last_dropped = 1;
      continue;
    }
    d->last_dropped = 0;
    if (d->count >= d->spec.queue) {
      d->queue_drops++;
      continue;
    }
    uint64_t start = now;
    if (d->spec.rate_mbit > 0) {
      if (d->link_free_ns > start) start = d->link_free_ns;
      start += (uint64_t)((double)n * 8.0 * 1000.0 / d->spec.rate_mbit); /* bits / (Mbit/s) = µs; ×1000 ns */
      d->link_free_ns = start;
    }
    double extra_ms = d->spec.delay_ms + (d->spec.jitter_ms > 0 ? uniform(&d->rng) * d->spec.jitter_ms : 0);
    uint64_t due = start + (uint64_t)(extra_ms * 1e6);
    if (due < d->last_due_ns) due = d->last_due_ns;
    d->last_due_ns = due;
    struct packet *p = &d->ring[(d->head + d->count) % MAX_QUEUE];
    p->due_ns = due;
    p->length = (uint16_t)n;
    memcpy(p->data, scratch, (size_t)n);
    d->count++;
    if (due > now) d->delayed++;
    d->delay_sum_ms += (double)(due - now) / 1e6;
  }
}

/* Sends what is due; returns ns until the next packet is due, or -1 when the queue is empty. */
static int64_t transmit(struct direction *d) {
  uint64_t now = now_ns();
  while (d->count > 0) {
    struct packet *p = &d->ring[d->head];
    if (p->due_ns > now) return (int64_t)(p->due_ns - now);
    if (write(d->out, p->data, p->length) == p->length) {
      d->forwarded++;
      d->bytes += p->length;
    } else d->write_errors++;
    d->head = (d->head + 1) % MAX_QUEUE;
    d->count--;
  }
  return -1;
}

static void print_stats(struct direction *dirs) {
  printf("{\"type\":\"stats\"");
  for (int i = 0; i < 2; i++) {
    struct direction *d = &dirs[i];
    printf(",\"%s\":{\"received\":%llu,\"forwarded\":%llu,\"dropped\":%llu,\"lossBursts\":%llu,\"queueDrops\":%llu,\"delayed\":%llu,"
           "\"queued\":%d,\"bytes\":%llu,\"writeErrors\":%llu,\"meanDelayMs\":%.3f,"
           "\"config\":{\"delayMs\":%g,\"jitterMs\":%g,\"lossPercent\":%g,\"burst\":%g,\"rateMbit\":%g,\"queue\":%d}}",
           d->name, (unsigned long long)d->received, (unsigned long long)d->forwarded, (unsigned long long)d->dropped,
           (unsigned long long)d->loss_bursts, (unsigned long long)d->queue_drops, (unsigned long long)d->delayed, d->count,
           (unsigned long long)d->bytes, (unsigned long long)d->write_errors,
           d->received - d->dropped - d->queue_drops ? d->delay_sum_ms / (double)(d->received - d->dropped - d->queue_drops) : 0.0,
           d->spec.delay_ms, d->spec.jitter_ms, d->spec.loss, d->spec.burst, d->spec.rate_mbit, d->spec.queue);
  }
  printf("}\n");
  fflush(stdout);
}

/* The drop times logged since the last call (ms, CLOCK_MONOTONIC), then forgets them. */
static void print_drops(struct direction *dirs) {
  printf("{\"type\":\"drops\"");
  for (int i = 0; i < 2; i++) {
    struct direction *d = &dirs[i];
    uint64_t n = d->drop_log_count < MAX_DROP_LOG ? d->drop_log_count : MAX_DROP_LOG;
    printf(",\"%s\":[", d->name);
    for (uint64_t k = 0; k < n; k++) printf("%s%.3f", k ? "," : "", (double)d->drop_log[(d->drop_log_count - n + k) % MAX_DROP_LOG] / 1e6);
    printf("]");
    d->drop_log_count = 0;
  }
  printf("}\n");
  fflush(stdout);
}

/* One stdin command. */
static void command(struct direction *dirs, char *line) {
  line[strcspn(line, "\r\n")] = 0;
  if (!strcmp(line, "stats")) print_stats(dirs);
  else if (!strcmp(line, "drops")) print_drops(dirs);
  else if (!strncmp(line, "set ", 4) && (!strncmp(line + 4, "ab ", 3) || !strncmp(line + 4, "ba ", 3))) {
    struct direction *d = &dirs[line[4] == 'a' ? 0 : 1];
    if (parse_spec(line + 7, &d->spec) == 0) printf("{\"type\":\"set\",\"ok\":true}\n");
    else printf("{\"type\":\"set\",\"ok\":false}\n");
    fflush(stdout);
  } else if (*line) {
    printf("{\"type\":\"error\",\"message\":\"unknown command\"}\n");
    fflush(stdout);
  }
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: %s <tun-a> <tun-b> <seed> <spec a->b> <spec b->a>\n", argv[0]);
    return 2;
  }
  static struct direction dirs[2];
  uint64_t seed = strtoull(argv[3], NULL, 10);
  for (int i = 0; i < 2; i++) {
    struct direction *d = &dirs[i];
    d->name = i == 0 ? "ab" : "ba";
    d->spec = (struct spec){0, 0, 0, 1, 0, 1000};
    if (parse_spec(argv[4 + i], &d->spec) < 0) {
      fprintf(stderr, "bad spec '%s'\n", argv[4 + i]);
      return 2;
    }
    d->rng = seed ^ (i ? 0x5851f42d4c957f2dull : 0x14057b7ef767814full);
    for (int k = 0; k < MAX_QUEUE; k++) d->ring[k].data = malloc(MAX_PACKET);
  }
  int a = open_tun(argv[1]), b = open_tun(argv[2]);
  if (a < 0 || b < 0) {
    fprintf(stderr, "cannot create TUN devices %s, %s: %s\n", argv[1], argv[2], strerror(errno));
    return 1;
  }
  dirs[0].in = a, dirs[0].out = b, dirs[1].in = b, dirs[1].out = a;
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  /* Real-time priority when allowed: the path's delay must not depend on the machine's CPU load.
     Safe: the loop sleeps in ppoll between packets, and the kernel caps real-time CPU at 95 %. */
  struct sched_param priority = {.sched_priority = 1};
  int realtime = sched_setscheduler(0, SCHED_FIFO, &priority) == 0;
  printf("{\"type\":\"ready\",\"realtime\":%s}\n", realtime ? "true" : "false");
  fflush(stdout);

  static unsigned char scratch[MAX_PACKET];
  char line[1024];
  size_t line_length = 0;
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  int stdin_open = 1;
  while (!stop_requested && stdin_open) {
    int64_t wait = -1;
    for (int i = 0; i < 2; i++) {
      int64_t next = transmit(&dirs[i]);
      if (next >= 0 && (wait < 0 || next < wait)) wait = next;
    }
    struct pollfd fds[3] = {{a, POLLIN, 0}, {b, POLLIN, 0}, {0, POLLIN, 0}};
    struct timespec timeout = {wait / 1000000000, wait % 1000000000};
    int ready = ppoll(fds, 3, wait < 0 ? NULL : &timeout, NULL);
    if (ready < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[0].revents & POLLIN) receive(&dirs[0], scratch);
    if (fds[1].revents & POLLIN) receive(&dirs[1], scratch);
    if (fds[2].revents & (POLLIN | POLLHUP)) {
      for (;;) {
        ssize_t n = read(0, line + line_length, sizeof line - 1 - line_length);
        if (n == 0) {
          stdin_open = 0;
          break;
        }
        if (n < 0) break;
        line_length += (size_t)n;
        line[line_length] = 0;
        char *newline;
        while ((newline = strchr(line, '\n'))) {
          *newline = 0;
          command(dirs, line);
          size_t rest = line_length - (size_t)(newline + 1 - line);
          memmove(line, newline + 1, rest);
          line_length = rest;
          line[line_length] = 0;
        }
        if (line_length == sizeof line - 1) line_length = 0; /* an overlong line: discard it */
      }
    }
  }
  print_stats(dirs);
  return 0;
}

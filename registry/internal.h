/*
 * registry/internal.h: inside registry/ only (make check-deps enforces it):
 * the context, the request, the fill and the counters.  Other layers use
 * registry/registry.h.
 */
#ifndef REGISTRY_INTERNAL_H
#define REGISTRY_INTERNAL_H

#include "registry.h"

#include <sys/queue.h>

#include <pthread.h>

struct evhttp;
struct evhttp_request;
struct evhttp_connection;
struct evhttp_bound_socket;
struct evbuffer;
struct event;
struct evkeyvalq;

/*
 * metrics.c: the counters behind /metrics and `ccprewarm stats`.
 * Process-lifetime unless in .store, which is kept in LMDB ("counters") and
 * survives restarts: it counts since the store was created.
 */
#define METRICS_NROUTES (ROUTE_NKINDS + 1) /* route kinds + "invalid" */
#define METRICS_NSTATUS 15
#define METRICS_NBUCKETS 12 /* finite buckets; +Inf extra */

struct metrics_store {
	uint64_t hits;
	uint64_t misses;
	uint64_t served_bytes;
	uint64_t bytes_saved;
	uint64_t upstream_bytes;
};

struct server_counters {
	uint64_t hits[2]; /* [0] blob, [1] manifest */
	uint64_t misses[2];
	uint64_t coalesced;
	uint64_t stale;
	uint64_t revalidated;
	uint64_t served_cache_bytes;	/* HIT, REVALIDATED, STALE */
	uint64_t served_upstream_bytes; /* MISS, COALESCED */
	uint64_t bytes_saved;		/* all but MISS */
	uint64_t upstream_bytes;
	uint64_t digest_mismatches;
	uint64_t tier_fills[2]; /* fills a cache upstream served: [0] from its
				   store (X-Cache HIT), [1] from further up */
	uint64_t upstream_errors;
	uint64_t requests;
	uint64_t http[METRICS_NROUTES][METRICS_NSTATUS];
	uint64_t http_buckets[METRICS_NROUTES][METRICS_NBUCKETS + 1];
	double http_sum[METRICS_NROUTES];
	uint64_t http_count[METRICS_NROUTES];
	struct metrics_store store; /* loaded at start, flushed */
	struct metrics_store store_flushed;
};

/*
 * loop.c: one event loop, its thread, its listener and its requests.
 * Loop 0 is the owner (the server's base, main's thread): fills, the curl
 * multi, LMDB writes, eviction, admin.  Other loops serve store hits and
 * relay everything else to the owner (a shadow request there); see
 * docs/design.md "Event loops".
 */
#define SERVER_MAX_LOOPS 16

struct loop_msg;
struct loop {
	struct server *srv;
	int id;
	struct event_base *base;
	struct evhttp *http;
	struct evhttp_bound_socket *bound;
	struct conn_guard *conns;    /* fd exhaustion, header deadline */
	TAILQ_HEAD(, req) reqs;	     /* this loop's live requests */
	size_t nreqs;		     /* written here, read by loop 0 (atomic) */
	struct server_counters *ctr; /* loop 0: &srv->ctr */
	struct server_counters own;  /* the others' */
	pthread_mutex_t ctr_mu;	     /* ctr, against metrics' snapshot */
	pthread_mutex_t mu;	     /* inbox */
	TAILQ_HEAD(, loop_msg) inbox;
	int wake[2]; /* pipe: a message arrived */
	struct event *wake_ev;
	struct event *drain_ev; /* the others: their part of a drain */
	pthread_t thread;
	int running; /* thread started */
	int done;    /* its loop has returned (atomic) */
};

struct server {
	struct event_base *base;
	const struct server_opts *opts;
	struct loop *loops[SERVER_MAX_LOOPS]; /* [0]: the owner */
	size_t nloops;
	size_t nlive; /* client requests in progress, all loops (atomic) */
	pthread_mutex_t hook_mu; /* req_hook, admin and metrics writers */
	struct blobstore *store;
	struct db *db;
	struct upstream_client *uc;
	struct pool *pool;	 /* fsync + rename of stored blobs */
	struct evict *evict;	 /* the budget, gc and verify */
	struct readers *readers; /* digests being read: not evicted */
	struct upstream *upstreams[SERVER_MAX_UPSTREAMS];
	size_t nupstreams;
	TAILQ_HEAD(, fill) fills; /* in-flight fills (single flight) */
	struct shared *shared;	  /* NULL: no shared store */
	size_t nfills;		  /* kept by fill.c */
	struct event *flush_ev;	  /* periodic db_flush */
	struct event *drain_ev;	  /* shutdown deadline / poll */
	int64_t drain_deadline_ms;
	int draining;
	struct alog *alog;     /* NULL: no access log */
	struct mcache *mcache; /* NULL: manifests are read from the store */
	struct server_counters ctr;
	struct server_admin {
		char path[64];
		enum req_method method;
		admin_fn fn;
		void *arg;
	} admin[32]; /* 16 are taken (stats, gc, verify, runs, recipes) */
	size_t nadmin;
	struct server_metrics {
		metrics_fn fn;
		void *arg;
	} metrics_extra[8];
	size_t nmetrics_extra;
	req_hook_fn req_hook; /* runs/: attributes requests to open runs */
	void *req_hook_arg;
};

/* conn.c: client connections (fd exhaustion, header deadline) ---------- */
struct evhttp;
struct evhttp_bound_socket;
struct evhttp_connection;
struct conn_guard *conn_guard_new(struct event_base *, struct evhttp *,
    struct evhttp_bound_socket *, int64_t header_timeout_s);
/* Before the listener goes (evhttp_del_accept_socket). */
void conn_guard_stop(struct conn_guard *);
/* After evhttp_free. */
void conn_guard_free(struct conn_guard *);
/* A client connection's close callback (conn.c holds evhttp's); NULL
 * clears it.  Use instead of evhttp_connection_set_closecb. */
void conn_set_closecb(struct conn_guard *, struct evhttp_connection *,
    void (*)(struct evhttp_connection *, void *), void *);
/* A request on evcon was dispatched: its header deadline is met. */
void conn_dispatched(struct conn_guard *, struct evhttp_connection *);

/* passthru.c: what an upstream request owned by a client request got. */
struct passthru_result {
	enum upstream_result res; /* the rest is valid if UPSTREAM_OK */
	long status;
	int64_t length; /* Content-Length, -1 if absent */
	char ctype[OCI_MEDIA_TYPE_MAX];
	struct digest digest; /* Docker-Content-Digest */
	int have_digest;
	struct evbuffer *body; /* a GET's body (up to OCI_MANIFEST_MAX) */
};
typedef void (*passthru_done_fn)(struct req *, const struct passthru_result *);

enum req_state {
	REQ_NEW,       /* routed, nothing sent */
	REQ_WAITING,   /* waiting on a fill or an upstream transfer */
	REQ_STREAMING, /* status and headers sent, body chunks going out */
	REQ_DONE,
};

struct shared_get; /* shared.c */
struct rangefwd;   /* rangefwd.c */

struct req {
	TAILQ_ENTRY(req) entry; /* loop->reqs */
	struct server *srv;
	struct loop *loop; /* where it runs */
	/* relayed between loops (loop.c): on a serving loop the front,
	 * talking to the client; on loop 0 its shadow, doing the work */
	struct loop_link *link;
	int shadow;
	int relay_mask;		    /* the method's bit, for the shadow */
	struct loop_msg *relay_end; /* a shadow's last word, sent at retire */
	struct evhttp_request *ev;
	struct evhttp_connection *evcon;
	enum req_method method;
	enum req_state state;
	enum req_cache cache;
	struct route route;
	int routed;	     /* route is valid */
	struct upstream *up; /* borrowed from srv */
	char *path;	     /* owned copy for the access log */
	char *accept;	     /* req_accept()'s cache */
	char *body;	     /* req_body()'s copy */
	size_t body_len;
	const char *admin_arg;
	int64_t start_ms;
	int64_t upstream_ms; /* -1: none */
	int status;
	uint64_t sent;	 /* body bytes handed to evhttp */
	int client_gone; /* connection closed under us */
	/* finished, but evhttp is still writing the reply: the access line
	 * waits for its last byte (or the connection's end) */
	struct evhttp_request *handed;
	int handed_done; /* evhttp finished it before req_finish returned */
	char *why;	 /* req_finish's cause, kept for that line */
	struct stream *stream;	       /* streaming a fill (stream.c) */
	int ranged;		       /* req_range found a partial range */
	int chunk_pending;	       /* a chunk is being written */
	void (*sent_cb)(struct req *); /* called when it has been */
	/* a transfer owned by this request (tags/list, HEAD, revalidation) */
	struct upstream_xfer *xfer;
	struct passthru_result px;
	passthru_done_fn passthru_done;
	/* the fill failed before streaming: 0 if this replied (STALE) */
	int (*fill_failed)(struct req *);
	enum oci_err fill_err; /* how the fill failed, for the reply */
	const char *fill_why;
	struct db_tag stale; /* the cached mapping, for STALE */
	int have_stale;
	/* a subsystem holding r while it waits (a stream, gc, verify):
	 * told first */
	void (*finish_cb)(struct req *);
	char peer[48];	      /* the client's address, "" if unknown */
	struct digest served; /* the Docker-Content-Digest replied */
	int have_served;
	char up_cache[32]; /* X-Cache of the tier above that filled it, or "" */
	/* a bucket request owned by this request (shared.c); finish_cb
	 * cancels it */
	struct shared_get *sget;
	/* a ranged GET relayed from a parent tier (rangefwd.c); finish_cb
	 * frees it */
	struct rangefwd *rfwd;
};

/* http.c: struct req's one lifecycle -------------------------------------- */

/* Binds l's listener (SO_REUSEPORT if reuseport) and its evhttp. */
int http_start(struct loop *l, int reuseport, unsigned short port);
/* The port l listens on (0 if none): for the next loops, and --listen :0. */
unsigned short http_port(const struct loop *l);
/* Stops accepting; live requests carry on. */
void http_stop(struct loop *);
/* Frees the evhttp (and every connection) and the connection guard. */
void http_free(struct loop *);
/* loop 0: a shadow for a front on another loop, dispatched at once. */
struct loop_link;
void http_shadow_new(struct loop *, struct loop_link *, enum req_method,
    int mask, const char *path, const char *peer, struct evkeyvalq *headers,
    struct evbuffer *body);
/* What a shadow tells its front besides the bytes (for the counters and
 * the access line). */
struct loop_relay {
	enum req_cache cache;
	int64_t upstream_ms;
	struct digest served;
	int have_served;
	char up_cache[32];
};
/* A front applies what its shadow said. */
void req_relayed(struct req *, const struct loop_relay *);
void req_relay_start(struct req *, int status, struct evkeyvalq *headers);
void req_relay_reply(struct req *, int status, struct evkeyvalq *headers,
    struct evbuffer *body, const char *why);
void req_relay_end(struct req *, const char *why);
/* A shadow's file segment was written by its front. */
void req_chunk_sent(struct req *);

/* loop.c: the event loops (see struct loop) ------------------------------ */
int loop_start(struct server *);
void loop_stop_accepting(struct server *);
/* 1 if no loop has a live request. */
int loop_idle(struct server *);
void loop_join(struct server *);
/* Cuts every request and frees every evhttp; then the counters may be
 * flushed before loop_free_all frees the loops. */
void loop_cut_all(struct server *);
void loop_free_all(struct server *);
/* A serving loop's request that is not a store hit: loop 0 does it. */
void loop_relay(struct req *);
/* The front ends before its shadow said its last word. */
void loop_front_gone(struct req *);
/* A shadow's output, relayed to its front. */
void loop_shadow_attach(struct req *);
void loop_shadow_start(struct req *, int status);
int loop_shadow_file(struct req *, int fd, uint64_t off, uint64_t len);
void loop_shadow_reply(struct req *, int status, struct evbuffer *body);
void loop_shadow_end(struct req *);
void loop_shadow_retire(struct req *, const char *why);
void loop_shadow_discard(struct req *);
/* Replies (if nothing went out yet: with the OCI error for status), writes
 * the access line, detaches from fills and transfers, frees.  The one exit
 * of every request. */
void req_finish(struct req *, int status, const char *why);
/* Bytes from the manifest cache (the reference is the reply's from here
 * on), honouring Range, with the same headers as req_reply_file. */
void req_reply_cached(
    struct req *, struct mcache_blob *, const struct digest *);
/* A stored file (fd owned from here on), honouring Range. */
void req_reply_file(struct req *, int fd, uint64_t size,
    const char *content_type, const struct digest *);
/* Parses the request's Range against size: 0 none/ignored (whole),
 * 1 satisfiable (*start, *end set; end exclusive), -1 unsatisfiable. */
int req_range(struct req *, uint64_t size, uint64_t *start, uint64_t *end);
const char *req_header(struct req *, const char *name);
/* Every Accept line joined, schema1 dropped; NULL if none.  Borrowed. */
const char *req_accept(struct req *);
/* 416 with Content-Range: bytes * /size, then req_finish. */
void req_range_invalid(struct req *, uint64_t size);
/* Starts a streamed reply of known (or -1 unknown) length: [start, end)
 * of total bytes (Content-Range if req_range found a partial range). */
void req_stream_start(struct req *, int status, int64_t length,
    const char *content_type, const struct digest *, uint64_t start,
    uint64_t end, uint64_t total);
/* Queues [off, off+len) of fd (dup'ed) and calls back when written. */
void req_stream_file(struct req *, int fd, uint64_t off, uint64_t len,
    void (*sent_cb)(struct req *));
/* Ends a streamed reply normally, then req_finish. */
void req_stream_end(struct req *);
/* Cuts the connection before the declared length, then req_finish. */
void req_abort(struct req *, const char *why);

/* fill.c: one upstream fetch per digest (or tag), told to subscribers --- */

/*
 * A fill fetches one blob or manifest once however many want it (single
 * flight): the transfer (upstream or the shared store, resumed with Range),
 * the temp file (blobs) or memory (manifests), hashing, verification, the
 * commit to the store and index.  It knows nothing of requests: whoever
 * wants it is a subscriber with callbacks (a client's stream in stream.c,
 * a pre-warm job through fill_fetch).
 *
 * A subscriber is told by value (struct fill_note) how far the fill got:
 * "bytes [0, avail) are in the temp file", "verified", "stored", "failed".
 * It reads the bytes from the file itself (pread, or a file segment of a
 * dup of note->fd), never from the fill's memory, and keeps what it needs
 * from a note rather than asking the fill later.  That is what lets a
 * subscriber live on another event loop (thread): a note can be carried
 * there as a message, and the file is shared by the kernel.  Today every
 * subscriber is on the fill's loop and is called directly.
 */
struct fill;
struct fill_sub;

/* What a fill fetches: its identity for single flight. */
struct fill_key {
	enum fill_kind kind;
	struct upstream *up;
	const char *repo;
	const char *tag; /* "" when by digest */
	int by_digest;
	const struct digest *digest;
	const char *accept; /* manifests; NULL: everything */
};

/* Everything in a note is valid for the call only: copy what you keep. */
struct fill_note {
	uint64_t avail; /* blob: bytes [0, avail) are in the temp file */
	int64_t size;	/* blob: its size, -1 until known; final if verified */
	int fd;		/* blob: the temp file (dup it to keep it), else -1 */
	int verified;	/* the bytes are the content: a stream may end */
	const struct digest *digest; /* by digest, or a manifest once stored */
	/* a manifest, on verified and stored: its body and media type */
	const void *body;
	size_t len;
	const char *media_type;
	const char *up_cache; /* the tier above's X-Cache, or "" */
	int64_t upstream_ms;  /* the upstream's time to headers */
	/* failed: the OCI error for a reply and its detail (NULL: the code's
	 * own text); cause: one line for logs and pre-warm, also set on
	 * stored when the content verified but could not be stored */
	enum oci_err err;
	const char *why;
	const char *cause;
};

/*
 * The callbacks (any may be NULL), on the fill's loop, never from inside
 * fill_subscribe.  bytes: a blob's bytes arrived (coalesced: at most once
 * per loop pass; the first with avail possibly 0 once headers are in).
 * verified: once; a blob's digest matched, or a manifest is complete and
 * checked.  restarted: the bytes told so far were not the content (a
 * shared-store object that did not hash to its name); the fill starts again
 * from byte 0, and a subscriber that passed any on must give up.  stored
 * (after verified) and failed are the last call: the subscription is freed
 * after it returns; do not unsubscribe it.  A callback may unsubscribe
 * itself, finish its request and start other fills.
 */
struct fill_cbs {
	void (*bytes)(void *arg, const struct fill_note *);
	void (*verified)(void *arg, const struct fill_note *);
	void (*restarted)(void *arg, const struct fill_note *);
	void (*stored)(void *arg, const struct fill_note *);
	void (*failed)(void *arg, const struct fill_note *);
};

enum fill_join {
	FILL_STARTED,	      /* no fill was in flight: this one started it */
	FILL_JOINED,	      /* joined one in flight (coalesced) */
	FILL_JOINED_VERIFIED, /* joined one already verified (as a hit) */
};

/*
 * Subscribes to the fill for k, starting one if none is in flight.  NULL
 * if it cannot start (errno ENOSPC or EDQUOT: the disk is full, an eviction
 * pass has been asked for).  cbs is borrowed for the subscription's life.
 */
struct fill_sub *fill_subscribe(struct server *, const struct fill_key *,
    const struct fill_cbs *, void *arg, enum fill_join *);
/* No callback after this; NULL-safe.  Not after stored or failed. */
void fill_unsubscribe(struct fill_sub *);
/* Fails every fill and its subscribers (shutdown). */
void fill_abort_all(struct server *);
/* 1 if a fill for k is in flight. */
int fill_busy(struct server *, const struct fill_key *);

/* stream.c: a client request streaming a fill (Range, HEAD, the pump) ---- */

/*
 * Subscribes r to the fill for its blob or manifest, starting one if there
 * is none, and replies from it (and finishes r): a blob is streamed from
 * the temp file as it grows, its last byte held until the digest verified.
 * Returns 1 if r joined a fill in flight, 0 if it started one or the fill
 * was verified already, -1 if it replied with an error.
 */
int stream_attach(struct req *, enum fill_kind);
/* Leaves the fill (req_finish does it through r->finish_cb). */
void stream_detach(struct req *);
/* 1 if a fill for r's blob or manifest is in flight. */
int stream_in_flight(struct req *, enum fill_kind);

/* readers.c: digests being read (sent, streamed, filled) --------------- */

/*
 * d is being read from its file (a reply, a stream, a fill's partial file):
 * eviction leaves it alone meanwhile.  add returns the table (a reference,
 * NULL once the server is gone) that del takes back; it may outlive the
 * server (libevent frees a reply's file segment when it likes).
 */
struct readers;
struct readers *readers_new(void);
void readers_unref(struct readers *); /* NULL-safe */
struct readers *readers_add(struct server *, const struct digest *);
void readers_del(struct readers *, const struct digest *);
int readers_busy(const struct server *, const struct digest *);

/* rangefwd.c: a cold ranged GET relayed from a parent tier ------------- */

/*
 * For a blob GET with one Range (no If-Range), neither stored nor in
 * flight, whose upstream is a ccprewarm: starts this node's full fill and
 * relays the parent's answer to the Range; 0 if it took r (it replies, or
 * hands r to the fill if the parent sends no 206), -1 to go on as usual.
 */
int rangefwd_start(struct req *);

/* evict.c: the store's budget, gc and verify --------------------------- */

struct evict;
/* Reads the budget from the server's options; adds admin gc and verify
 * and the metrics.  Call once the pool exists. */
struct evict *evict_new(struct server *);
/* After the pool is drained and evhttp freed (readers call back). */
void evict_free(struct evict *);
/*
 * Starts eviction if the store plus incoming bytes would cross max_bytes
 * or the free-space floor (partial files go at once, the rest in passes).
 */
void evict_check(struct server *, uint64_t incoming);
/* A fill failed for lack of space (wanted: its size, 0 unknown). */
void evict_nospace(struct server *, uint64_t wanted);

/* passthru.c: an upstream request owned by one client request -------- */

/*
 * Sends method path upstream for r; done gets the result (borrowed: the
 * request owns it) once, never for a request finished meanwhile.
 */
void passthru_start(struct req *, enum upstream_method, const char *path,
    const char *accept, passthru_done_fn done);

/* manifest.c, blob.c, tags.c: handlers ----------------------------------- */

void manifest_handle(struct req *);
void blob_handle(struct req *);
/* The store alone, on any loop: 0 if answered, -1 (nothing sent) if not. */
int manifest_hit(struct req *);
int blob_hit(struct req *);
void tags_handle(struct req *);
void metrics_handle(struct req *);
/* admin.c: /_ccprewarm/v1/..., refused unless from loopback. */
void admin_handle(struct req *);
/* GET stats: metrics_json(). */
void admin_stats(struct req *, void *);
/* Loads the store-lifetime counters; 0 or -1. */
int metrics_open(struct server *);
/* Adds a finished request to the counters. */
void metrics_request_done(struct server *, const struct req *);
/* Counts body bytes received from an upstream. */
void metrics_upstream_bytes(struct server *, size_t);
/* Counts a request that joined an in-flight fill. */
void metrics_coalesced(struct server *);
/* Counts upstream bytes that did not match their digest. */
void metrics_digest_mismatch(struct server *);
/* A fill a cache upstream (a parent tier) served: from its store or not. */
void metrics_tier_fill(struct server *, int from_store);
/* Counts an upstream error if the transfer ended without an answer or the
 * answer was a 5xx or a 429 (the one place that decides it). */
void metrics_upstream_result(struct server *, enum upstream_result, long);
/* Writes store-lifetime counters not yet in LMDB (timer and exit). */
void metrics_flush(struct server *);
/* The counters as one JSON object (new string); for `ccprewarm stats`. */
char *metrics_json(struct server *);

/* shared.c: the shared store as the server uses it ---------------------- */

/* Opens the configured bucket (none configured: 0, nothing done). */
int shared_open(struct server *);
void shared_close(struct server *);
/* The bucket, or NULL if none is configured. */
struct s3 *shared_s3(struct server *);
/* Background uploads of what this node verified; errors are logged. */
/* A lookup in the bucket by digest: counted in its /metrics family. */
enum shared_lookup { SHARED_HIT, SHARED_MISS, SHARED_CORRUPT };
void shared_count(struct server *, enum shared_lookup);
void shared_upload_blob(struct server *, const struct digest *);
void shared_upload_mem(struct server *, const struct digest *,
    const char *media_type, const void *, size_t);
/*
 * Publishes a tag's mapping (digest, media type, when upstream last
 * confirmed it) as "<prefix>tags/<upstream>/<repo>:<tag>", in the
 * background: other nodes answer from it while their upstream is down.
 */
void shared_tag_publish(struct server *, const char *upstream, const char *repo,
    const char *tag, const struct db_tag *);
/*
 * A bucket request owned by r (r->sget, cancelled if r finishes first):
 * done gets the result once; length is the object's (-1 unknown), body
 * the first SHARED_GET_MAX bytes of a GET.  0, or -1 if no bucket is
 * configured or its breaker is open (done is not called).
 */
#define SHARED_GET_MAX 1024
typedef void (*shared_get_fn)(
    struct req *, enum s3_result, int64_t length, const char *body, size_t len);
int shared_head_blob(struct req *, const struct digest *, shared_get_fn);
int shared_get_tag(struct req *, const char *upstream, const char *repo,
    const char *tag, shared_get_fn);

#endif
